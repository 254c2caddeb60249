"""The camera widget in a real browser: frames reach the kernel, a slow kernel drops frames instead of lagging.

A plain Voila server renders a tiny notebook around ``Camera``; the fake webcam plays a real face video.
"""

from __future__ import annotations

import json
import time

import nbformat
import pytest

PROBE = """
import json, time
import ipywidgets as widgets
from smartsession.widgets.camera import Camera
from smartsession.widgets.webrtc import WebRTCCamera

camera = {cls}(fps={fps})
probe = widgets.Textarea(layout=widgets.Layout(width="600px", height="120px"))
probe.add_class("probe")
latencies, shapes = [], set()

def slow(frame, t):
    time.sleep({delay})
    latencies.append(time.time() - t)
    shapes.add(frame.shape)

def show(*_):
    probe.value = json.dumps({{"counts": camera.counts, "stats": getattr(camera, "stats", {{}}),
                              "status": camera.status, "message": getattr(camera, "message", ""), "latencies": latencies[-30:], "shapes": sorted(shapes)}})

camera.on_frame(slow)
camera.observe(show, names=[n for n in ("stats", "status") if camera.has_trait(n)])
camera.on_frame(lambda frame, t: show())
display(camera, probe)
"""


@pytest.fixture
def probe_page(tmp_path, voila_app):
    """``probe_page(fps=, delay=, cls=)``: Voila on a probe notebook around a camera widget; returns its URL."""

    def start(*, fps: float, delay: float, cls: str = "Camera") -> str:
        source = PROBE.format(fps=fps, delay=delay, cls=cls)
        path = tmp_path / "probe.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
        return voila_app(path)

    return start


def read_probe(page) -> dict:
    text = page.locator(".probe textarea").input_value()
    return json.loads(text) if text else {}


def wait_probe(page, predicate, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    data: dict = {}
    while time.monotonic() < deadline:
        data = read_probe(page)
        if data and predicate(data):
            return data
        page.wait_for_timeout(250)
    raise AssertionError(f"condition not met within {timeout} s; last probe: {data}")


def test_frames_reach_the_kernel_as_rgb_arrays(browser, probe_page, screenshot):
    url = probe_page(fps=10, delay=0.0)
    page = browser.new_page()
    try:
        page.goto(url)
        data = wait_probe(page, lambda d: d["counts"]["processed"] >= 20 and d["stats"].get("processed", 0) >= 10)
        screenshot(page, "camera-live")
        assert data["status"] == "live"
        assert data["shapes"] == [[480, 640, 3]]
        assert data["counts"]["bad"] == 0 and data["counts"]["errors"] == 0
        assert data["stats"]["rtt_ms_p90"] < 500
        # The round trip split into its parts: the browser's encode, the kernel's own durations, the transit.
        parts = data["stats"]["breakdown_ms"]
        assert set(parts) == {"encode", "wait", "decode", "callbacks", "transit"}, parts
        assert all(0 <= median <= p90 for median, p90 in parts.values()), parts
        assert page.locator(".smartsession-camera-note").inner_text().startswith("Camera on.")
    finally:
        page.close()


def test_slow_kernel_drops_frames_and_delay_does_not_grow(browser, probe_page, screenshot):
    # 0.4 s per frame against 10 fps capture: without back-pressure the queue would grow by ~6 frames a second.
    url = probe_page(fps=10, delay=0.4)
    page = browser.new_page()
    try:
        page.goto(url)
        data = wait_probe(page, lambda d: d["counts"]["processed"] >= 25, timeout=60)
        screenshot(page, "camera-slow-kernel")
        stats, counts, lat = data["stats"], data["counts"], data["latencies"]
        assert stats["max_in_flight_seen"] <= 2
        assert stats["skipped"] > 2 * counts["processed"], data  # the browser skipped most ticks
        early, late = lat[:5], lat[-5:]
        assert max(late) < 1.5, data  # bounded: a couple of frames' worth of processing, never growing
        assert sum(late) / len(late) < sum(early) / len(early) + 0.4, data
    finally:
        page.close()


def test_webrtc_camera_delivers_frames_through_the_same_api(browser, probe_page, screenshot):
    url = probe_page(fps=10, delay=0.0, cls="WebRTCCamera")
    page = browser.new_page()
    try:
        page.goto(url)
        data = wait_probe(page, lambda d: d["counts"]["processed"] >= 5, timeout=60)
        screenshot(page, "webrtc-live")
        assert data["status"] == "live"
        assert data["shapes"] == [[480, 640, 3]]
        assert data["counts"]["bad"] == 0 and data["counts"]["dropped"] == 0  # one snapshot in flight at a time
    finally:
        page.close()


def camera_status(page) -> str:
    return page.locator(".smartsession-camera-note").get_attribute("data-status") or ""


def test_unplugged_camera_and_hidden_tab_are_explained_and_recover(browser, probe_page, screenshot):
    url = probe_page(fps=10, delay=0.0)
    page = browser.new_page()
    try:
        page.goto(url)
        wait_probe(page, lambda d: d["counts"]["processed"] >= 5)

        # Chromium fires "ended" on the track when the device goes away; the fake device cannot be unplugged.
        page.evaluate("document.querySelector('.smartsession-camera video').srcObject"
                      ".getVideoTracks()[0].dispatchEvent(new Event('ended'))")
        note = page.locator(".smartsession-camera-note[data-status='ended']")
        note.get_by_text("The camera was disconnected: plug it back in, then press Try again.").wait_for(timeout=10_000)
        screenshot(page, "camera-unplugged")
        stopped = read_probe(page)["counts"]["processed"]
        page.wait_for_timeout(1000)
        assert read_probe(page)["counts"]["processed"] <= stopped + 2  # at most the frames already in flight
        page.get_by_role("button", name="Try again").click()
        wait_probe(page, lambda d: d["status"] == "live" and d["counts"]["processed"] >= stopped + 5)

        # A hidden tab pauses capture (a student switching tabs is not looking at the lesson page).
        page.evaluate("""() => {
            Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        page.locator(".smartsession-camera-note[data-status='hidden']").get_by_text(
            "Paused while this tab is hidden").wait_for(timeout=10_000)
        page.wait_for_timeout(500)
        hidden = read_probe(page)["counts"]["processed"]
        page.wait_for_timeout(1500)
        assert read_probe(page)["counts"]["processed"] <= hidden + 2
        page.evaluate("""() => {
            Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        wait_probe(page, lambda d: d["status"] == "live" and d["counts"]["processed"] >= hidden + 5)
    finally:
        page.close()


def test_insecure_origin_explains_https_or_localhost(playwright_sync, chromium, chromium_flags, fake_camera, voila_app,
                                                      tmp_path, screenshot):
    # A name other than localhost over plain http is what a student on another machine would open
    # without --self-signed; the name is mapped to 127.0.0.1, so nothing leaves the machine.
    path = tmp_path / "camera.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from smartsession.widgets import Camera\nCamera()")]), path)
    url = voila_app(path).replace("127.0.0.1", "classroom.test")
    args = chromium_flags(fake_camera) + ["--host-resolver-rules=MAP classroom.test 127.0.0.1"]
    browser = playwright_sync.chromium.launch(executable_path=chromium, headless=True, args=args)
    try:
        page = browser.new_page()
        page.goto(url)
        assert page.evaluate("window.isSecureContext") is False
        page.locator(".smartsession-camera-note[data-status='insecure']").get_by_text(
            "open this page over https or on localhost").wait_for(timeout=60_000)
        screenshot(page, "insecure-origin")
    finally:
        browser.close()


@pytest.mark.parametrize(
    "error, status, words",
    [
        ("NotFoundError", "no-camera", "No camera found: plug in or switch on a webcam"),
        ("NotReadableError", "in-use", "The camera is busy in another app"),
    ],
)
def test_missing_or_busy_camera_is_explained(browser, voila_app, tmp_path, error, status, words):
    # The fake device can be neither absent nor busy, so getUserMedia fails the way Chromium does then.
    path = tmp_path / "camera.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from smartsession.widgets import Camera\nCamera()")]), path)
    url = voila_app(path)
    context = browser.new_context()
    context.add_init_script(
        f"navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('refused', '{error}'));"
    )
    try:
        page = context.new_page()
        page.goto(url)
        page.locator(f".smartsession-camera-note[data-status='{status}']").get_by_text(words).wait_for(timeout=60_000)
        assert page.get_by_role("button", name="Try again").is_visible()
    finally:
        context.close()
