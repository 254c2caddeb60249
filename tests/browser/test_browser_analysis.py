"""Browser analysis mode in headless Chromium against a real `smartsession serve`: the face landmarker runs in the
page, only packed faces cross the websocket (never a picture), the assets come from the server and stay cached,
a browser that cannot run the model falls back to pictures only after saying so, and `--analysis server` still
sends pictures.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from smartsession.vision import browser_assets, packed

PAGE_TIMEOUT_MS = 180_000
AGREE = "I agree, start my camera"
JPEG_START = b"\xff\xd8\xff"
#: The consent describes a mode once the browser has said which analysis it runs.
READY = "() => document.querySelector('.ss-consent:not([data-mode=\"\"])') !== null"


def camera_stats(page) -> dict:
    text = page.locator(".smartsession-camera").get_attribute("data-stats")
    return json.loads(text) if text else {}


def wait_stats(page, predicate, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    stats: dict = {}
    while time.monotonic() < deadline:
        stats = camera_stats(page)
        if stats and predicate(stats):
            return stats
        page.wait_for_timeout(500)
    raise AssertionError(f"camera stats did not get there within {timeout} s; last: {stats}")


def sent_binary_frames(page) -> list[bytes]:
    """Every binary websocket message the page sends (the kernel channel carries the camera's buffers)."""
    frames: list[bytes] = []

    def on_socket(ws):
        ws.on("framesent", lambda payload: frames.append(payload) if isinstance(payload, bytes) else None)

    page.on("websocket", on_socket)
    return frames


def piped(frame: bytes) -> list[bytes] | None:
    """The packed faces of a batch sent through serve's face pipe, or None when ``frame`` is not one."""
    try:
        return packed.split_batch(frame)[2]
    except packed.PackedFaceError:
        return None


def faces_in(frame: bytes) -> list[bytes]:
    """The packed faces in one message: a face pipe batch, or a kernel websocket message (v1 framing) whose
    buffers are packed faces."""
    from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

    faces = piped(frame)
    if faces is not None:
        return faces
    _channel, parts = deserialize_msg_from_ws_v1(frame)
    return [bytes(p) for p in parts[4:] if bytes(p[:4]) == packed.MAGIC]


def downloads(context, page) -> dict:
    """Bytes the page fetches over the network (Chromium's own count, headers included), total and for our assets."""
    totals = {"bytes": 0, "asset_bytes": 0, "asset_requests": 0}
    urls: dict[str, str] = {}
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")

    def sent(event):
        urls[event["requestId"]] = event["request"]["url"]

    def finished(event):
        totals["bytes"] += event["encodedDataLength"]
        if "/smartsession/assets/" in urls.get(event["requestId"], ""):
            totals["asset_bytes"] += event["encodedDataLength"]
            totals["asset_requests"] += 1

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.loadingFinished", finished)
    return totals


def name_field(page):
    # A page waits for a kernel from the pool, which refills behind each student: slow on a busy machine.
    field = page.get_by_placeholder("as your teacher will see it")
    field.wait_for(timeout=PAGE_TIMEOUT_MS)
    return field


def open_student(context, server, name: str):
    page = context.new_page()
    page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
    name_field(page).fill(name)
    return page


def test_the_browser_analyses_the_face_and_sends_numbers_never_pictures(browser, server, screenshot):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    first = downloads(context, page)
    binary = sent_binary_frames(page)
    page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
    name_field(page).fill("Grace Hopper")
    agree = page.get_by_role("button", name=AGREE)
    # The consent waits for the browser to say which analysis it runs, then describes that one.
    page.wait_for_function(READY, timeout=60_000)
    consent = page.locator(".ss-consent").inner_text()
    assert "The picture never leaves this device" in consent and "sends a picture" not in consent
    agree.click()
    stats = wait_stats(page, lambda s: s.get("processed", 0) >= 30)
    page.wait_for_selector(".ss-feedback .ss-state", timeout=30_000)
    screenshot(page, "browser-analysis-live")
    note = page.locator(".smartsession-camera-note").inner_text()
    assert "analysed in this browser" in note and "never the picture" in note

    assert stats["mode"] == "browser" and stats["sent"] == 0 and stats["faces_sent"] >= 30, stats
    # What crossed the websocket: small packed faces, no JPEG or PNG anywhere. A kernel message puts its buffers
    # after the JSON parts; a batch message carries one packed face per buffer, several a message.
    batches = [faces_in(f) for f in binary if packed.MAGIC in f]
    faces = [face for batch in batches for face in batch]
    assert len(faces) >= 30
    # Past Jupyter's messaging, through serve's face pipe, once the kernel has offered it (within a batch or so).
    through_pipe = [f for f in binary if piped(f) is not None]
    assert len(through_pipe) >= len(batches) - 2, (len(through_pipe), len(batches))
    # ~3 a message at 5 fps and 0.5 s batches (fewer when the browser's landmarker runs slower than the camera)
    assert len(faces) >= 1.5 * len(batches), (len(faces), len(batches))
    assert all(len(f) <= packed.message_size(len(packed.FEATURE_LANDMARKS) + 4) for f in faces)
    assert not any(JPEG_START in f or b"\x89PNG" in f for f in binary)
    decoded = [packed.decode(f).face for f in faces]
    assert sum(f.face for f in decoded) >= 0.9 * len(decoded)  # the fake camera shows a face throughout
    print(f"packed faces: {len(faces)} in {len(batches)} messages, {sum(map(len, faces)) / len(faces):.0f} bytes "
          "each on average; "
          f"landmarker {stats['detect_ms_median']} ms median / {stats['detect_ms_p90']} ms p90 per frame; "
          f"model loaded in {stats.get('model_load_ms')} ms")

    # A second visit (another lesson, same browser) downloads none of the landmarker's files again.
    second_page = context.new_page()
    second = downloads(context, second_page)
    second_page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
    name_field(second_page)
    second_page.wait_for_function(READY, timeout=60_000)
    assert "never leaves this device" in second_page.locator(".ss-consent").inner_text()
    print(f"student downloads: first visit {first['bytes']:,} bytes ({first['asset_bytes']:,} of them the "
          f"landmarker's {first['asset_requests']} files); second visit {second['bytes']:,} bytes "
          f"({second['asset_bytes']:,} for the landmarker's {second['asset_requests']} files)")
    assert first["asset_requests"] >= 4 and first["asset_bytes"] > 5_000_000
    # Loaded again, but from the browser's cache: immutable URLs are not even revalidated.
    assert second["asset_requests"] >= 4 and second["asset_bytes"] == 0, second
    context.close()


def test_assets_are_compressed_immutable_and_only_the_listed_ones(server):
    urls = browser_assets.asset_urls("/")
    wasm = server.request(urls["vision_wasm_internal.wasm"], headers={"Accept-Encoding": "gzip"})
    assert wasm.status == 200
    assert wasm.headers["Content-Encoding"] == "gzip" and "immutable" in wasm.headers["Cache-Control"]
    assert len(wasm.body) < 0.4 * browser_assets.path_of(browser_assets.BY_NAME["vision_wasm_internal.wasm"]).stat().st_size
    plain = server.request(urls["vision_bundle.mjs"])
    assert plain.status == 200 and plain.headers["Content-Type"].startswith("text/javascript")
    assert "Content-Encoding" not in plain.headers
    again = server.request(urls["vision_bundle.mjs"], headers={"If-None-Match": plain.headers["Etag"]})
    assert again.status == 304
    for path in ("smartsession/assets/0000000000000000/vision_bundle.mjs",
                 "smartsession/assets/9d5fc9ef74b22329/..%2f..%2fserve.json",
                 f"smartsession/assets/{browser_assets.BY_NAME['vision_bundle.mjs'].sha256[:16]}/package.json"):
        assert server.request(path).status == 404, path


def test_a_browser_that_cannot_load_the_model_asks_before_sending_pictures(browser, server, screenshot):
    context = browser.new_context()
    # As if the wasm could not be had (blocked, or a browser that cannot run it): the page must fall back.
    context.route("**/smartsession/assets/**/*.wasm", lambda route: route.abort())
    page = context.new_page()
    binary = sent_binary_frames(page)
    page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
    name_field(page).fill("Alan Turing")
    page.wait_for_function(READY, timeout=60_000)
    consent = page.locator(".ss-consent").inner_text()
    assert "sends a picture from your camera to the class server" in consent
    assert not any(JPEG_START in f for f in binary)  # no picture before the student agrees
    page.get_by_role("button", name=AGREE).click()
    stats = wait_stats(page, lambda s: s.get("processed", 0) >= 10)
    screenshot(page, "browser-analysis-fallback")
    assert stats["mode"] == "server" and stats["faces_sent"] == 0
    note = page.locator(".smartsession-camera-note").inner_text()
    assert "Pictures go to the class server" in note and "cannot analyse your face itself" in note
    assert any(JPEG_START in f for f in binary)
    context.close()


@pytest.fixture(scope="module")
def server_mode_server(tmp_path_factory):
    from testkit.serving import running_server

    with running_server(tmp_path_factory.mktemp("serve-server-mode"), analysis="server") as srv:
        yield srv


def test_server_analysis_sends_pictures_and_says_so(browser, server_mode_server, screenshot):
    context = browser.new_context()
    page = open_student(context, server_mode_server, "Ada Lovelace")
    consent = page.locator(".ss-consent").inner_text()
    assert "sends a picture from your camera to the class server" in consent
    page.get_by_role("button", name=AGREE).click()
    stats = wait_stats(page, lambda s: s.get("processed", 0) >= 10)
    page.wait_for_selector(".ss-feedback .ss-state", timeout=30_000)
    screenshot(page, "server-analysis-live")
    assert stats["mode"] == "server" and stats["sent"] >= 10 and stats["faces_sent"] == 0
    note = page.locator(".smartsession-camera-note").inner_text()
    assert "Pictures go to the class server" in note and "cannot analyse" not in note
    stats = wait_stats(page, lambda s: s.get("processed", 0) >= 40)
    # The page captures at 5 frames a second and sends pictures at 5 (PICTURE_FPS): each is a face analysis
    # on the server. "fps" is the rate of processed pictures over the last seconds.
    assert 2.0 <= stats["fps"] <= 5.5, stats
    context.close()
    # The kernel analysed the pictures without a line of the face model's runtime on serve's terminal
    # (MediaPipe logs "W1207 ... Input tensor memory is not aligned ..." the glog way, on the kernel's fd 2).
    log = server_mode_server.log_text()
    assert not re.search(r"^[IWEF]\d{4} \d\d:\d\d:\d\d", log, re.M), log
