"""The whole lesson in headless Chromium: a real `smartsession serve`, the teacher page and two real student pages.

The teacher loads a five-item plan and advances through it with the keyboard, sends a check-in; both students
see it, one answers with the keyboard, one with the mouse; the teacher sees the tally; after "End lesson" the
report shows the plan's segments, the answers per segment and the agreement table; after a restart of serve the
teacher page lists that lesson, opens its report, and its grid holds only the current lesson's students.
"""

from __future__ import annotations

from test_accessibility import named, tab_to
from test_classroom import LIVE, PAGE_TIMEOUT_MS, card_of, open_teacher

PLAN = "# Warm-up\n# Vectors\n# <script>alert(1)</script>\n# Exercise\n# Wrap-up"


def join_student(browser, link: str, name: str):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.goto(link, timeout=PAGE_TIMEOUT_MS)
    page.get_by_placeholder("as your teacher will see it").fill(name)
    page.get_by_role("button", name="I agree, start my camera").click()
    return context, page


def segment_titles(teacher) -> list[str]:
    """The titles of the segment bands the browser drew on the class chart (its rendered SVG, not its data)."""
    return teacher.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot .annotation-text')].map(t => t.textContent)")


def brought_into_view(teacher, box: str, timeout_ms: float = 30_000) -> None:
    """Wait until keyboard focus is inside ``box`` and its top is on screen (what the page does on opening it)."""
    teacher.wait_for_function(
        """(box) => {
            const el = document.querySelector(box);
            if (!el || !el.contains(document.activeElement)) return false;
            const top = el.getBoundingClientRect().top;
            return top >= 0 && top < window.innerHeight;
        }""", arg=box, timeout=timeout_ms)


#: What serve's terminal must never show during a lesson (kernel and framework noise).
NOISE = ("Traceback", "websocket_ping_timeout", "not aligned", "Ctrl-C will not work", "To connect another client")


def test_plan_check_in_report_and_history_across_a_restart(browser, tmp_path, screenshot):
    from testkit.serving import running_server

    data_dir = tmp_path / "data"
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    with running_server(tmp_path / "first", data_dir=data_dir) as server:
        teacher_context, teacher, outside = open_teacher(browser, server)
        # Before the class arrives: no lesson yet, "Start lesson" can be pressed, and the page says when one starts.
        teacher.get_by_role("button", name="Start lesson").wait_for(timeout=30_000)
        teacher.get_by_text("it starts when you press Start lesson or when the first student joins").wait_for(
            timeout=30_000)
        # The empty chart's time axis shows today's clock, never plotly's placeholder year 2000.
        # The chart draws after the page's text does: wait for its ticks, then read them.
        ticks = teacher.wait_for_function(
            "() => { const t = [...document.querySelectorAll('.js-plotly-plot .xtick text')]"
            ".map(t => t.textContent); return t.length ? t : null; }", timeout=30_000).json_value()
        assert ticks and not any("2000" in t for t in ticks), ticks
        teacher.get_by_role("button", name="Start lesson").click()
        teacher.get_by_role("button", name="End lesson").wait_for(timeout=30_000)
        link = teacher.locator(".ss-join a").get_attribute("data-join", timeout=30_000)
        students = [join_student(browser, link, name) for name in ("Ada", "Ben")]
        for name in ("Ada", "Ben"):
            card_of(teacher, name, timeout_ms=120_000)
        # From the top of the page to the first student card: no stop in plotly's toolbar, a dozen Tabs at most.
        teacher.evaluate("() => document.activeElement && document.activeElement.blur()")
        passed = tab_to(teacher, named("Ada"))
        assert len(passed) <= 12 and not any("plot" in p.lower() or "zoom" in p.lower() for p in passed), passed

        # A five-item plan, typed and saved; N starts each item's segment.
        teacher.get_by_text("Lesson plan", exact=True).click()
        teacher.get_by_placeholder("One item per line, or Markdown headings").fill(PLAN)
        teacher.get_by_role("button", name="Save plan").click()
        teacher.locator(".ss-plan-now", has_text="5 items").wait_for(timeout=30_000)
        teacher.evaluate("() => document.activeElement.blur()")  # out of the text field: N is the plan's key
        teacher.keyboard.press("n")
        teacher.locator(".ss-plan-current", has_text="Warm-up").wait_for(timeout=30_000)
        teacher.keyboard.press("PageDown")
        teacher.locator(".ss-plan-current", has_text="Vectors").wait_for(timeout=30_000)
        teacher.keyboard.press("n")
        teacher.locator(".ss-plan-current", has_text="<script>alert(1)</script>").wait_for(timeout=30_000)
        # The chart in words names each segment (redrawn every 2 s by the kernel).
        chart_text = teacher.locator(".ss-chart-text")
        for title in ("Warm-up", "Vectors", "<script>alert(1)</script>"):
            chart_text.filter(has_text=title).wait_for(timeout=120_000)
        # And the chart itself draws a band per segment: the kernel can be held up on a busy 2-core machine.
        teacher.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot .annotation-text').length >= 3", timeout=120_000)
        assert segment_titles(teacher)[:3] == ["Warm-up", "Vectors", "<script>alert(1)</script>"]
        assert teacher.locator(".js-plotly-plot .shapelayer path").count() >= 3

        # A check-in: both students see a calm card; one answers with the keyboard, one with the mouse.
        (ada_context, ada), (ben_context, ben) = students
        for page in (ada, ben):
            # Every text the live region reads out from here on (a later line, e.g. the end of calibration on a
            # busy machine, may follow the question within the second).
            page.evaluate("""() => { const region = document.querySelector('.ss-announce');
                window.ssSaid = []; new MutationObserver(() => window.ssSaid.push(region.textContent))
                    .observe(region, {childList: true, subtree: true, characterData: true}); }""")
        teacher.get_by_text("Check-ins", exact=True).click()
        teacher.get_by_role("button", name="Where was your mind just now?").click()
        for page in (ada, ben):
            page.locator(".ss-checkin", has_text="Where was your mind just now?").wait_for(timeout=60_000)
            # Read out, never focused: the student's focus stays where it was.
            assert page.evaluate("() => !document.activeElement.closest('.ss-checkin')")
            page.wait_for_function("() => window.ssSaid.some(t => t.startsWith('Your teacher asks'))",
                                   timeout=30_000)
        ada.get_by_role("button", name="on the lesson").focus()
        ada.keyboard.press("Enter")
        ben.get_by_role("button", name="somewhere else").click()
        for page in (ada, ben):
            page.locator(".ss-checkin", has_text="your answer was sent").wait_for(timeout=30_000)
        teacher.locator(".ss-tally", has_text="2 of 2 present answered (100%)").wait_for(timeout=60_000)
        screenshot(ada, "student-check-in")
        screenshot(teacher, "teacher-tally")

        # A student's detail opens in view with the focus on it.
        card_of(teacher, "Ada").click()
        brought_into_view(teacher, ".ss-detail-box")

        teacher.get_by_role("button", name="End lesson").click()
        teacher.get_by_role("button", name="Start lesson").wait_for(timeout=30_000)
        # The students' pages say what the teacher's page now shows: disconnected (not "paused").
        for page in (ada, ben):
            page.locator(".ss-teacher", has_text="disconnected").wait_for(timeout=60_000)
        # The segments stay on the chart after the lesson ended.
        assert "Vectors" in chart_text.inner_text()
        assert segment_titles(teacher)[:3] == ["Warm-up", "Vectors", "<script>alert(1)</script>"]
        teacher.get_by_role("button", name="Session report").click()
        report = teacher.frame_locator("iframe.ss-report")
        report.locator("#checkins").wait_for(timeout=120_000)
        brought_into_view(teacher, ".ss-report-box")
        assert "Where was your mind just now?" in report.locator("#checkins").inner_text()
        assert "on the lesson: 1, somewhere else: 1" in report.locator("#checkins").inner_text()
        assert "Not enough answers" in report.locator("#agreement-note").inner_text()
        segments = report.locator("#segments").inner_text()
        assert "Warm-up" in segments and "Vectors" in segments and "<script>alert(1)</script>" in segments
        screenshot(teacher, "teacher-report-with-answers")
        for context in (ada_context, ben_context, teacher_context):
            context.close()
        assert outside == []
        log = server.log_text()
        assert not [n for n in NOISE if n in log], log

    with running_server(tmp_path / "second", data_dir=data_dir) as server:
        teacher_context, teacher, _ = open_teacher(browser, server)
        teacher.get_by_text("Past lessons", exact=True).click()
        teacher.locator(".ss-history", has_text="100%").wait_for(timeout=60_000)
        assert teacher.locator(".ss-card").count() == 0  # nobody of the last lesson on today's grid
        teacher.get_by_role("button", name="Open its report").click()
        report = teacher.frame_locator("iframe.ss-report")
        report.locator("#agreement").wait_for(timeout=120_000)
        # A new student today: the grid shows only them.
        context, carl = join_student(browser, server.join_url, "Carl")
        card_of(teacher, "Carl", timeout_ms=120_000)
        teacher.wait_for_selector(LIVE)
        assert teacher.locator(".ss-card").count() == 1
        context.close()
        teacher_context.close()
