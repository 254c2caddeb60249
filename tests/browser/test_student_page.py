"""The student page in headless Chromium against a real `smartsession serve`, with a real face on the fake webcam.

From the join link to a live state; pause and resume; a refused camera; the form when the link is incomplete.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from smartsession.schema import STATES

ROOT = Path(__file__).resolve().parents[2]
#: A page from an empty pool runs the whole notebook (MediaPipe, the model) before it appears.
PAGE_TIMEOUT_MS = 180_000
NAME_FIELD = "as your teacher will see it"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two preheated student kernels: this module opens several student pages."""
    from testkit.serving import running_server

    with running_server(tmp_path_factory.mktemp("serve"), pool_size=2) as srv:
        yield srv


def open_student(context, url: str):
    page = context.new_page()
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    return page


def agree(page, name: str) -> None:
    page.get_by_placeholder(NAME_FIELD).wait_for(timeout=PAGE_TIMEOUT_MS)
    page.get_by_placeholder(NAME_FIELD).fill(name)
    page.get_by_role("button", name="I agree, start my camera").click()


def feedback_state(page) -> str:
    return page.locator(".ss-feedback").first.get_attribute("data-state") or ""


def test_join_link_gives_live_feedback_then_pause_and_resume(browser, server, screenshot):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = open_student(context, server.join_url)
    # The consent step says what is measured and what the teacher sees before anything starts, for the analysis
    # mode the browser runs (it says so once the face model has loaded in the page).
    page.wait_for_selector('.ss-consent[data-mode="browser"]', timeout=PAGE_TIMEOUT_MS)
    consent = page.locator(".ss-consent").inner_text()
    assert "What is measured" in consent and "Never video, pictures or face points" in consent
    agree(page, "Grace Hopper")
    start = time.monotonic()
    page.wait_for_selector(".ss-feedback[data-state]", timeout=30_000)
    took = time.monotonic() - start
    print(f"first live state {took:.1f} s after consent")
    assert took < 15
    assert feedback_state(page) in STATES
    # What the teacher sees is what was actually sent to the hub: a state chip with a score, no pixels.
    page.wait_for_function(
        "() => document.querySelector('.ss-teacher') && /engagement \\d+/.test(document.querySelector('.ss-teacher').innerText)",
        timeout=30_000,
    )
    page.get_by_text("Connected to your class.").wait_for(timeout=30_000)
    assert page.locator(".smartsession-camera-note").inner_text().startswith("Camera on.")
    # The real face on the fake camera is found: some frames give a state other than "away".
    page.wait_for_function(
        "() => { const f = document.querySelector('.ss-feedback[data-state]'); return f && f.dataset.state !== 'away'; }",
        timeout=30_000,
    )
    page.get_by_label("Show face points").check()
    page.wait_for_timeout(1000)
    screenshot(page, "student-live")

    page.get_by_role("button", name="Pause").click()
    page.get_by_text("Paused: nothing is measured or shared.").wait_for(timeout=10_000)
    page.wait_for_function(
        "() => document.querySelector('.smartsession-camera-note').dataset.status === 'off'", timeout=10_000
    )
    page.locator(".ss-teacher", has_text="paused").wait_for(timeout=10_000)
    screenshot(page, "student-paused")
    # Paused means no analysis: the feedback does not change while paused.
    page.wait_for_timeout(1500)
    assert page.locator(".ss-feedback").first.get_attribute("data-state") is None

    page.get_by_role("button", name="Resume").click()
    page.wait_for_selector(".ss-feedback[data-state]", timeout=30_000)
    assert page.locator(".smartsession-camera-note").inner_text().startswith("Camera on.")
    context.close()


def test_camera_denied_shows_the_friendly_error(camera_denied_context, server, screenshot):
    page = open_student(camera_denied_context, server.join_url)
    agree(page, "Alan Turing")
    note = page.locator(".smartsession-camera-note[data-status='denied']")
    note.wait_for(timeout=30_000)
    # The words come from the kernel (one source of text for every status), a moment after the status.
    note.get_by_text("Camera permission denied: allow camera access in the browser's address bar").wait_for(
        timeout=10_000
    )
    assert page.get_by_role("button", name="Try again").is_visible()
    # The page says it in the feedback area too, and the kernel keeps working: the student still joined.
    page.locator(".ss-feedback .ss-error, .ss-error", has_text="Camera permission denied").first.wait_for(timeout=10_000)
    page.get_by_text("Connected to your class.").wait_for(timeout=30_000)
    screenshot(page, "camera-denied")


def test_without_a_join_link_the_page_asks_and_a_wrong_code_says_so(browser, server, voila_app, screenshot):
    # `smartsession serve` refuses the student page without a valid join link; opened elsewhere (plain
    # Voila, JupyterLab) the page asks for the class and code itself.
    url = voila_app(ROOT / "dashboards" / "student.ipynb", SMARTSESSION_HUB_URL=server.url.rstrip("/"))
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = open_student(context, url)
    page.get_by_text("Join your class").wait_for(timeout=PAGE_TIMEOUT_MS)
    page.get_by_placeholder("class id from your teacher").fill(server.class_id)
    page.get_by_placeholder("join code").fill("wrongcode1")
    page.get_by_role("button", name="Continue").click()
    agree(page, "Mallory")
    page.get_by_text("Could not join the class").wait_for(timeout=30_000)
    assert page.get_by_text("Join your class").is_visible()  # back to the form, ready for the right code
    # The live view is hidden again (it stays on the page for the face model) and the camera released.
    assert not page.locator(".smartsession-camera").is_visible()
    page.wait_for_selector('.smartsession-camera-note[data-status="off"]', state="attached", timeout=30_000)
    screenshot(page, "wrong-join-code")

    page.get_by_placeholder("join code").fill(server.join_code)
    page.get_by_role("button", name="Continue").click()
    agree(page, "Margaret Hamilton")
    page.get_by_text("Connected to your class.").wait_for(timeout=30_000)
    page.wait_for_selector(".ss-feedback[data-state]", timeout=30_000)
    context.close()
