"""WCAG 2.1 AA in headless Chromium: axe-core on every state a student or teacher reaches, driven by the keyboard alone.

One `smartsession serve` and one browser for the module. The student page is walked from the join form to
live, paused and calibrating again with Tab, typing, Enter and Space only; the teacher page from an empty class
to a simulated class with alerts, a segment, emotions off and the report open. At every stop axe-core's
wcag2a/wcag2aa/wcag21a/wcag21aa rules run and the test fails listing every violation, and every control
the Tab key lands on must show a visible focus indicator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from axe import assert_no_violations


#: Every test here starts pages, a simulation or both: each takes well over 20 s.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_MS = 180_000
LIVE = '.ss-status[data-status="live"]'
#: Waits for the camera, the analysis or the hub: generous, CI machines are shared and often loaded.
STEP_TIMEOUT_MS = 90_000
#: A Tab walk that has not reached its target after this many presses is lost.
MAX_TABS = 60

#: What the focused element is and whether its focus shows (an outline or a box-shadow that is not "none").
FOCUS_JS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 1;
    const shadow = style.boxShadow && style.boxShadow !== 'none';
    const names = [el.getAttribute('aria-label'), el.labels && el.labels[0] && el.labels[0].innerText,
                   el.placeholder, el.innerText, el.title];
    const label = names.filter(Boolean).map(n => n.trim()).join(' | ') || el.tagName;
    return {label: label.slice(0, 120), tag: el.tagName, visible: outline || shadow,
            outline: `${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}`, shadow: style.boxShadow};
}"""


def tab_to(page, matches, *, shift: bool = False) -> list[str]:
    """Press Tab until the focused control's label satisfies ``matches``; every stop must show its focus.

    Returns the labels passed on the way (the tab order), for order checks.
    """
    passed = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Shift+Tab" if shift else "Tab")
        focused = page.evaluate(FOCUS_JS)
        if focused is None:
            continue
        assert focused["visible"], f"no visible focus on {focused}"
        passed.append(focused["label"])
        if matches(focused["label"]):
            return passed
    raise AssertionError(f"Tab never reached the control; it went through {passed}")


def stop(sim: subprocess.Popen) -> None:
    """End a simulation (its students close their connections); harmless when it has already ended."""
    if sim.poll() is None:
        sim.terminate()
    try:
        sim.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        sim.kill()
        sim.communicate()


def named(text: str):
    return lambda label: text.lower() in label.lower()


# --- the teacher page -------------------------------------------------------------------------------------

#: A class where a third of the students look away all along (alerts after 30 s), the rest behave as usual.
SCENARIO = {"name": "a11y", "drops": [{"at": 0.0, "until": 1.0, "share": 0.3, "mix": {"away": 1}}]}


def test_teacher_page_by_keyboard_has_no_axe_violation_in_any_state(browser, server, tmp_path, screenshot):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(server.teacher_url, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    # First in the module: no student has joined this class yet.
    assert page.locator(".ss-card").count() == 0
    page.get_by_text("No students yet").wait_for(timeout=STEP_TIMEOUT_MS)
    assert_no_violations(page, "teacher: empty class")

    scenario = tmp_path / "a11y.json"
    scenario.write_text(json.dumps(SCENARIO))
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "smartsession", "simulate", "--url", server.url, "--class", server.class_id,
            "--join", server.join_code, "--students", "20", "--rate", "2", "--duration", "240",
            "--scenario", str(scenario), "--seed", "3",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('.ss-card[data-presence=\"connected\"]').length >= 20", timeout=60_000
        )
        # The persistent "away" students raise alerts after 30 s; they are announced politely, once each batch.
        page.wait_for_selector(".ss-alert", timeout=90_000)
        page.wait_for_function(
            "() => document.querySelector('.ss-announce').textContent.includes('has been away')", timeout=STEP_TIMEOUT_MS
        )
        assert_no_violations(page, "teacher: full class with alerts")
        screenshot(page, "teacher-alerts")

        # A segment, by keyboard: the title field, then its button.
        tab_to(page, named("segment title"))
        page.keyboard.type("Group work")
        # One Tab from a field to the button it belongs to: the order follows the layout.
        assert len(tab_to(page, named("Start segment"))) == 1
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => (document.querySelector('.js-plotly-plot').layout.annotations || []).some(a => a.text === 'Group work')",
            timeout=STEP_TIMEOUT_MS,
        )
        page.wait_for_function(
            "() => document.querySelector('.ss-chart-text').textContent.includes('Group work')", timeout=STEP_TIMEOUT_MS
        )
        assert_no_violations(page, "teacher: segment running")

        # Emotions off with the space bar on the switch.
        assert len(tab_to(page, named("Emotion states"))) == 1
        page.keyboard.press("Space")
        page.wait_for_function(
            "() => document.querySelectorAll('.ss-count[data-state=\"happy\"]').length === 0", timeout=STEP_TIMEOUT_MS
        )
        assert_no_violations(page, "teacher: emotions off")

        # A student's card opens its timeline with Enter.
        tab_to(page, named("Sim student"))
        page.keyboard.press("Enter")
        page.wait_for_selector(".ss-detail", timeout=STEP_TIMEOUT_MS)
        page.wait_for_selector(".ss-timeline", timeout=STEP_TIMEOUT_MS)
        assert_no_violations(page, "teacher: student detail open")

        # The report, by keyboard, checked inside its frame as well.
        tab_to(page, named("Session report"), shift=True)
        page.keyboard.press("Enter")
        frame_el = page.wait_for_selector("iframe.ss-report", timeout=90_000)
        frame = frame_el.content_frame()
        frame.wait_for_selector("#engagement-figure .main-svg", timeout=60_000)
        assert_no_violations(page, "teacher: report open")
        assert_no_violations(frame, "teacher: the report in its frame")
        screenshot(page, "teacher-report")

        # The lesson is over: the students leave first, since a state arriving after "End lesson" rightly
        # opens the next lesson at once and "Start lesson" would show only for a moment.
        stop(sim)
        page.wait_for_function(
            "() => document.querySelectorAll('.ss-card[data-presence=\"connected\"]').length === 0",
            timeout=STEP_TIMEOUT_MS,
        )
        # End the lesson with the keyboard, then start a new one with the same key on the same button.
        tab_to(page, named("End lesson"), shift=True)
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Start lesson").wait_for(timeout=STEP_TIMEOUT_MS)
        page.keyboard.press("Enter")
        page.get_by_role("button", name="End lesson").wait_for(timeout=STEP_TIMEOUT_MS)
    finally:
        stop(sim)
        context.close()


# --- the student page -------------------------------------------------------------------------------------


def test_student_page_by_keyboard_has_no_axe_violation_in_any_state(browser, server, voila_app, screenshot):
    # Plain Voila (not `serve`) shows the join form the student fills when the link is incomplete.
    url = voila_app(ROOT / "dashboards" / "student.ipynb", SMARTSESSION_HUB_URL=server.url.rstrip("/"))
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    page.get_by_text("Join your class").wait_for(timeout=PAGE_TIMEOUT_MS)
    assert_no_violations(page, "student: join form")

    # Class, code, Continue: one Tab each, in the order they are read.
    tab_to(page, named("class id from your teacher"))
    page.keyboard.type(server.class_id)
    assert len(tab_to(page, named("join code"))) == 1
    page.keyboard.type(server.join_code)
    assert len(tab_to(page, named("Continue"))) == 1
    page.keyboard.press("Enter")

    page.get_by_text("What is measured").wait_for(timeout=STEP_TIMEOUT_MS)
    assert_no_violations(page, "student: consent")
    tab_to(page, named("as your teacher will see it"))
    page.keyboard.type("Katherine Johnson")
    assert len(tab_to(page, named("I agree"))) == 1
    page.keyboard.press("Enter")

    page.get_by_text("Calibrating: look at the screen").wait_for(timeout=STEP_TIMEOUT_MS)
    assert_no_violations(page, "student: calibrating")
    page.wait_for_selector(".ss-feedback[data-state]", timeout=STEP_TIMEOUT_MS)
    page.get_by_text("Connected to your class.").wait_for(timeout=STEP_TIMEOUT_MS)
    page.get_by_text("Calibrated to your relaxed face").wait_for(timeout=STEP_TIMEOUT_MS)
    assert_no_violations(page, "student: live")
    # A screen reader hears the state through the polite live region, not through every redraw.
    live = page.locator('[role="status"][aria-live="polite"].ss-announce')
    page.wait_for_function(
        "() => /You look|You seem|We cannot see|Hard to tell|Something may/.test("
        "document.querySelector('.ss-announce').textContent)",
        timeout=STEP_TIMEOUT_MS,
    )
    assert live.count() == 1
    screenshot(page, "student-live")

    # Pause, Calibrate again and the face-points switch: one Tab each, in the order they are shown.
    tab_to(page, named("Pause"))
    page.keyboard.press("Space")
    page.get_by_text("Paused: nothing is measured or shared.").wait_for(timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.querySelector('.ss-announce').textContent.includes('Measuring paused')", timeout=STEP_TIMEOUT_MS
    )
    assert_no_violations(page, "student: paused")
    # Focus stays on the toggle, now "Resume".
    focused = page.evaluate(FOCUS_JS)
    assert focused and "Resume" in focused["label"], focused
    page.keyboard.press("Space")
    page.wait_for_selector(".ss-feedback[data-state]", timeout=STEP_TIMEOUT_MS)
    assert len(tab_to(page, named("Calibrate again"))) == 1
    page.keyboard.press("Enter")
    page.get_by_text("Calibrating: look at the screen").wait_for(timeout=STEP_TIMEOUT_MS)
    assert len(tab_to(page, named("Show face points"))) == 1
    page.keyboard.press("Space")
    assert page.get_by_label("Show face points").is_checked()
    page.get_by_text("Calibrated to your relaxed face").wait_for(timeout=STEP_TIMEOUT_MS)
    assert_no_violations(page, "student: live with face points")
    context.close()


def test_camera_error_has_no_axe_violation(camera_denied_context, server, screenshot):
    page = camera_denied_context.new_page()
    page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
    page.get_by_placeholder("as your teacher will see it").fill("Alan Turing")
    page.get_by_role("button", name="I agree, start my camera").click()
    page.locator(".smartsession-camera-note[data-status='denied']").wait_for(timeout=STEP_TIMEOUT_MS)
    page.locator(".ss-error", has_text="Camera permission denied").first.wait_for(timeout=STEP_TIMEOUT_MS)
    page.get_by_text("Connected to your class.").wait_for(timeout=STEP_TIMEOUT_MS)
    assert_no_violations(page, "student: camera denied")
    screenshot(page, "camera-denied")


# --- the report file --------------------------------------------------------------------------------------


def test_report_html_has_no_axe_violation(browser, report_file):
    page = browser.new_page()
    try:
        page.goto(report_file.as_uri())
        page.wait_for_selector("#engagement-figure .main-svg", timeout=STEP_TIMEOUT_MS)
        assert_no_violations(page, "report")
        # Every chart has a text alternative carrying its numbers.
        for figure in ("engagement-figure", "states-figure", "students-figure"):
            assert page.locator(f"#{figure}-text").count() == 1, figure
        # Every control of the report is reached with Tab and shows its focus; Enter opens the timelines.
        tab_to(page, named("Per-student timelines"))
        page.keyboard.press("Enter")
        page.wait_for_selector("#students-figure .heatmaplayer", timeout=STEP_TIMEOUT_MS)
        assert_no_violations(page, "report with the per-student timelines open")
    finally:
        page.close()
