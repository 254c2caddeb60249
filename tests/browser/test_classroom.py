"""The classroom end to end in headless Chromium: a real `smartsession serve`, the teacher page, real student pages.

A student opens the join link with the fake webcam (a real face video); the teacher page must show them live,
paused, then disconnected; with a class of 30 simulated students the teacher page must keep answering clicks.
"""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlsplit

LIVE = '.ss-status[data-status="live"]'
#: A cold teacher kernel imports plotly and the hub client before the page appears (it is not preheated).
PAGE_TIMEOUT_MS = 180_000


def card_of(teacher, name: str, timeout_ms: float = 60_000):
    """The card whose label is ``name`` (labels are the names students typed)."""
    card = teacher.locator(".ss-card", has=teacher.locator(".ss-label", has_text=name))
    card.wait_for(timeout=timeout_ms)
    return card


def wait_attr(teacher, student_id: str, attr: str, values: tuple[str, ...], timeout_ms: float) -> float:
    """Wait until the card of ``student_id`` has ``data-<attr>`` in ``values``; return the seconds it took."""
    start = time.monotonic()
    teacher.wait_for_function(
        """([sid, attr, values]) => {
            const card = document.querySelector(`.ss-card[data-student="${sid}"]`);
            return card !== null && values.includes(card.dataset[attr]);
        }""",
        arg=[student_id, attr, list(values)],
        timeout=timeout_ms,
    )
    return time.monotonic() - start


def offline_requests(page) -> list[str]:
    """Collect every request the page makes to a host other than the server's (there must be none)."""
    outside: list[str] = []

    def check(request):
        host = urlsplit(request.url).hostname
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and host not in ("127.0.0.1", "localhost"):
            outside.append(request.url)

    page.on("request", check)
    return outside


def open_teacher(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    teacher = context.new_page()
    outside = offline_requests(teacher)
    teacher.goto(server.teacher_url, timeout=PAGE_TIMEOUT_MS)
    teacher.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
    return context, teacher, outside


def test_teacher_sees_a_real_student_live_then_paused_then_gone(browser, server, screenshot):
    # The page shows the students' link (the join code comes with the hub's snapshot) and its QR code.
    teacher_context, teacher, outside = open_teacher(browser, server)
    assert teacher.locator(".ss-card").count() == 0
    # Plotly's FigureWidget rendered from the package itself (anywidget), no CDN.
    teacher.wait_for_selector(".js-plotly-plot", timeout=60_000)
    join = teacher.locator(".ss-join a")
    join.wait_for(timeout=30_000)
    link = join.get_attribute("data-join")
    assert link == server.join_url  # absolute, built from the host the teacher used
    assert teacher.locator(".ss-join svg").count() == 1

    student_context = browser.new_context(viewport={"width": 1100, "height": 800})
    student = student_context.new_page()
    student.goto(link, timeout=PAGE_TIMEOUT_MS)
    student.get_by_placeholder("as your teacher will see it").fill("Ada Lovelace")
    student.get_by_role("button", name="I agree, start my camera").click()

    card = card_of(teacher, "Ada Lovelace")
    sid = card.get_attribute("data-student")
    took = wait_attr(teacher, sid, "presence", ("connected",), 30_000)
    teacher.wait_for_function(
        """(sid) => {
            const c = document.querySelector(`.ss-card[data-student="${sid}"]`);
            return c && c.dataset.engagement !== "" && c.dataset.state !== "";
        }""",
        arg=sid,
        timeout=30_000,
    )
    print(f"student live on the teacher page {took:.1f} s after the card appeared")
    state = card.get_attribute("data-state")
    assert state in ("focused", "happy", "confused", "distracted", "drowsy", "away", "uncertain")
    # The class gauge and the counts follow this one student (drawn in the same pass, a moment apart).
    teacher.wait_for_function(
        """() => document.querySelector('.ss-gauge').dataset.engagement !== ""
                 && [...document.querySelectorAll('.ss-count')].reduce((n, e) => n + Number(e.dataset.count), 0) === 1""",
        timeout=20_000,
    )
    screenshot(student, "student-live")
    screenshot(teacher, "teacher-live")

    # Clicking the card opens the student's timeline.
    card.click()
    teacher.wait_for_selector(f'.ss-detail[data-student="{sid}"]', timeout=15_000)
    teacher.wait_for_selector(".ss-timeline", timeout=15_000)

    student.get_by_role("button", name="Pause").click()
    wait_attr(teacher, sid, "presence", ("paused",), 15_000)
    student.get_by_role("button", name="Resume").click()
    wait_attr(teacher, sid, "presence", ("connected",), 30_000)

    # Closing the tab (as a student does) ends their kernel and its hub connection.
    student.close(run_before_unload=True)
    # 8 s of silence (ClassView.stale_after) at most, plus slack for a loaded CI machine.
    took = wait_attr(teacher, sid, "presence", ("disconnected",), 15_000)
    print(f"card disconnected {took:.1f} s after the student page closed")
    screenshot(teacher, "teacher-after-student-left")
    student_context.close()

    assert outside == [], f"the teacher page reached outside the server: {outside}"
    teacher_context.close()


def test_thirty_simulated_students_keep_the_teacher_page_responsive(browser, server, screenshot):
    teacher_context, teacher, _ = open_teacher(browser, server)
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "smartsession", "simulate", "--url", server.url, "--class", server.class_id,
            "--join", server.join_code, "--students", "30", "--rate", "5", "--duration", "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        teacher.wait_for_function(
            """() => [...document.querySelectorAll('.ss-card[data-presence="connected"]')]
                      .filter(c => c.dataset.engagement !== "").length >= 30""",
            timeout=60_000,
        )
        before = teacher.locator(".ss-card").evaluate_all("els => els.map(e => e.dataset.engagement).join()")
        # The page keeps working under load: a click reaches the kernel and the detail comes back,
        # and the cards keep moving with the simulated students.
        target = teacher.locator('.ss-card[data-presence="connected"]').nth(17)
        sid = target.get_attribute("data-student")
        target.click()
        teacher.wait_for_selector(f'.ss-detail[data-student="{sid}"]', timeout=30_000)
        teacher.wait_for_function(
            "(before) => [...document.querySelectorAll('.ss-card')].map(e => e.dataset.engagement).join() !== before",
            arg=before,
            timeout=30_000,
        )
        # The class chart fills in (the series gains a point a second, the chart redraws every 2 s).
        teacher.wait_for_function(
            "() => { const d = document.querySelector('.js-plotly-plot'); return d && d.data[0].x.length > 1; }",
            timeout=15_000,
        )
        # A lecture segment started from the page comes back from the hub as a band on the chart.
        teacher.get_by_placeholder("segment title, e.g. Exercise 2").fill("Group work")
        teacher.get_by_role("button", name="Start segment").click()
        teacher.wait_for_function(
            """() => {
                const d = document.querySelector('.js-plotly-plot');
                return d && (d.layout.shapes || []).length >= 1
                    && (d.layout.annotations || []).some(a => a.text === 'Group work');
            }""",
            timeout=30_000,
        )
        # Emotions off for the session: the counts drop the emotion states.
        teacher.get_by_label("Emotion states (happy, confused)").uncheck()
        teacher.wait_for_function(
            "() => document.querySelectorAll('.ss-count[data-state=\"happy\"], .ss-count[data-state=\"confused\"]').length === 0",
            timeout=30_000,
        )
        screenshot(teacher, "teacher-30-students")
        # The session report opens inside the page, its charts drawn by the plotly it carries.
        teacher.get_by_role("button", name="Session report").click()
        report = teacher.frame_locator("iframe.ss-report")
        report.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        teacher.locator("iframe.ss-report").scroll_into_view_if_needed()
        screenshot(teacher, "teacher-report")
    finally:
        sim.terminate()
        try:
            out, _ = sim.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            out, _ = sim.communicate()
        teacher_context.close()
    assert sim.returncode in (0, -15), out[-3000:]
