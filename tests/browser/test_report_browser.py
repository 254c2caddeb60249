"""The HTML report in headless Chromium, offline: a simulated lesson through a real hub, its plots render.

The page is opened from a file with every network request refused, so a CDN or any fetch would show.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from smartsession.report import build_report
from smartsession.simulate import run_simulation


def test_report_renders_offline_with_its_plots(browser, report_file, screenshot):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    requests = []

    def refuse_network(route):
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", refuse_network)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(report_file.as_uri())
        page.wait_for_selector("#engagement-figure .main-svg", timeout=30_000)
        # The class series, the students-present line, the drop marker: plotly drew real traces.
        assert page.locator("#engagement-figure .scatterlayer .trace").count() >= 3
        assert page.locator("#engagement-figure .shapelayer path").count() >= 4  # segment bands
        assert page.locator("#states-figure .barlayer .trace").count() >= 2
        assert page.locator("#drops li").count() >= 1
        assert "Long derivation" in page.locator("#drops li").first.inner_text()
        assert "Long derivation" in page.locator("#segments tbody tr").first.inner_text()

        # Per-student timelines stay behind a click; opened, the heatmap gets the page's width.
        assert not page.locator("#students").evaluate("d => d.open")
        screenshot(page, "report")
        page.locator("#students > summary").click()
        page.wait_for_selector("#students-figure .heatmaplayer", timeout=10_000)
        width = page.locator("#students-figure .main-svg").first.evaluate("s => s.getBoundingClientRect().width")
        assert width > 900
        labels = page.locator("#students-figure .ytick text").evaluate_all("ts => ts.map(t => t.textContent)")
        assert labels and all(label.startswith("Student ") for label in labels)
        screenshot(page, "report-students")

        assert errors == []
        assert requests == [report_file.as_uri()], f"the report fetched something: {requests}"
    finally:
        context.close()


def test_mock_classroom_through_smartsession_serve_then_report(server, browser, screenshot, tmp_path):
    """What a teacher does to try SmartSession without cameras: serve, simulate, then read the report."""

    async def play():
        return await run_simulation(
            server.url.rstrip("/"), server.class_id, server.join_code, 6, rate_hz=1, duration_s=240,
            scenario="drop", teacher_token=server.teacher_token, seed=2, speed=12,
        )

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, play()).result()
    report = build_report(server.data_dir, result.session_id)
    assert report.n_students == 6 and report.messages == result.sent
    assert list(report.segments.sort_values("start")["title"]) == [
        "Introduction", "Worked example", "Long derivation", "Exercises"
    ]
    (path,) = report.write(tmp_path, ["html"])
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        page.wait_for_selector("#engagement-figure .main-svg", timeout=30_000)
        assert page.locator("#segments tbody tr").count() == 4
        screenshot(page, "served-class-report")
    finally:
        page.close()
