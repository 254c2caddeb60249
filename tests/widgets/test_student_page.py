"""Student page logic without a browser: the join link, the words shown, and a real Analyzer on real frames.

The page in a real browser against a real server is tested in tests/browser/test_student_page.py.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from smartsession.analysis import Analyzer, Observation
from smartsession.dataset.media import astronaut
from smartsession.pages.student import FEEDBACK_EVERY, JoinRequest, StudentPage
from smartsession.pages.student_html import TIPS, consent_html, feedback_html, teacher_view_html, tip_for
from smartsession.schema import EMOTION_STATES, STATES, StateMessage


def test_join_request_from_the_join_link():
    req = JoinRequest.from_query("class=c1a2b3&join=abcd1234&name=Ada%20L")
    assert req == JoinRequest("c1a2b3", "abcd1234", "Ada L")
    assert req.problem() == ""
    assert JoinRequest.from_query("?class=c1&join=j1").class_id == "c1"  # Voila may keep the "?"
    # The seat token serve adds for the kernel (a reload joins as the same student).
    assert JoinRequest.from_query("class=c1&join=j1&seat=abc.def").seat == "abc.def"


@pytest.mark.parametrize(
    "query, words",
    [
        (None, "Enter the class and join code"),
        ("", "Enter the class and join code"),
        ("class=c1", "Enter the class and join code"),
        ("class=c1<script>&join=x", "class id does not look right"),
        ("class=c1&join=a b", "join code does not look right"),
    ],
)
def test_incomplete_or_odd_links_say_what_to_do(query, words):
    assert words in JoinRequest.from_query(query).problem()


def test_every_state_has_a_friendly_tip():
    assert set(TIPS) == set(STATES)
    assert tip_for("distracted") == "You seem to be looking away."
    assert tip_for("focused", face=False) == TIPS["away"]


def test_consent_names_what_is_measured_and_drops_emotions_when_off():
    on, off = consent_html(emotions=True), consent_html(emotions=False)
    for text in (on, off):
        assert "What is measured" in text and "What your teacher sees" in text and "Never video" in text
    assert all(s in on for s in EMOTION_STATES)
    assert not any(s in off for s in EMOTION_STATES)


def test_teacher_view_shows_exactly_the_message():
    msg = StateMessage(class_id="c1", student_id="s1", seq=1, t=time.time(), state="drowsy", engagement=41.6,
                       confidence=0.8, features={"yaw": 12.5})
    text = teacher_view_html(msg)
    assert "drowsy" in text and "<b>42</b>" in text and "yaw 12.50" in text
    paused = teacher_view_html(StateMessage(class_id="c1", student_id="s1", seq=2, t=time.time(),
                                            state="uncertain", engagement=0, confidence=0, paused=True))
    assert "paused" in paused and "nothing is measured" in paused


def test_feedback_escapes_and_shows_components():
    obs = Observation(source="camera", frame=0, media_time=0, wall_time=time.time(), face=True, faces=1, state="focused",
                      engagement=77.4, confidence=0.9, engagement_components={"gaze<b>": 0.5, "eyes": 90.0})
    text = feedback_html(obs)
    assert 'data-state="focused"' in text and ">77<" in text
    assert "gaze&lt;b&gt;" in text and "<b>" not in text.split("ss-components")[1]
    assert 'width:50%' in text and 'width:90%' in text


@pytest.fixture(scope="module")
def page():
    with StudentPage(Analyzer(mode="stream")) as p:
        yield p


@pytest.mark.slow
def test_real_frames_give_live_feedback_and_pause_stops_the_analysis(page):
    face = astronaut()
    start = time.time()
    for i in range(5):
        page._on_frame(face, start + i * 0.1)
    obs = page.last_observation
    assert obs.face and obs.state == "happy"  # the astronaut smiles
    assert obs.wall_time == pytest.approx(start + 0.4)  # capture time, for the teacher's latency
    assert f'data-state="{obs.state}"' in page.feedback.value
    page.set_paused(True)
    assert page.camera.active is False and page.pause_button.description == "Resume"
    page._on_frame(face, start + 1.0)
    assert page.last_observation is obs  # nothing analysed while paused
    assert "Paused" in page.feedback.value
    page.set_paused(False)
    assert page.camera.active is False  # Resume before the student agreed (a page can press it) starts nothing
    page.consented = True
    page.set_paused(False)
    assert page.camera.active is True and page.camera.accept_frames is True
    page.consented = False
    page.set_paused(False)


def test_frames_sent_before_consent_are_not_decoded():
    face = astronaut()
    data = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
    with StudentPage(Analyzer(mode="stream")) as page:
        page.camera.send = lambda content, buffers=None: None
        # A hostile page: switch the camera on and press Pause/Resume over the comms, then send real frames.
        page.camera.set_state({"active": True})
        page.pause_button.set_state({"value": True})
        page.pause_button.set_state({"value": False})
        for seq in range(3):
            page.camera._on_custom(page.camera, {"type": "frame", "seq": seq, "t": time.time()}, [data])
        time.sleep(0.3)
        counts = page.camera.counts
        assert counts["refused"] == 3 and counts["received"] == counts["processed"] == 0
        assert page.last_observation is None
@pytest.mark.parametrize("batch_seconds", [0.0, 1.0], ids=["per-frame transport", "batches"])
def test_feedback_shows_a_new_state_at_once_and_moving_numbers_a_few_times_a_second(page, batch_seconds):
    page.camera.batch_seconds = batch_seconds
    every = batch_seconds or FEEDBACK_EVERY
    face, blank = astronaut(), np.zeros((480, 640, 3), np.uint8)
    redraws: list[str] = []
    page.feedback.observe(lambda change: redraws.append(change["new"]), names="value")
    try:
        frames = []  # (capture time, (state, face), redrawn, the screen shows this frame)
        start = time.time()
        for i in range(36):  # 3 s of capture at ~11 frames a second, then the student leaves the picture
            t = start + i * 0.09  # off FEEDBACK_EVERY's multiples, so no frame sits on the boundary
            before = len(redraws)
            page._on_frame(face if i < 30 else blank, t)
            obs = page.last_observation
            frames.append((t, (obs.state, obs.face), len(redraws) > before, page.feedback.value == feedback_html(obs)))
    finally:
        page.feedback.unobserve_all("value")
    shown, shown_at = None, None
    for t, key, redrawn, current in frames:
        if key != shown:
            assert current, "a new state or tip must show with the frame that brought it"
        elif t - shown_at >= every:
            assert current, "the numbers must still move"
        else:
            assert not redrawn, "the same state redrawn more often than the transport allows"
        if key != shown or t - shown_at >= every:
            shown, shown_at = key, t
    assert len(redraws) < len(frames) / 2  # far fewer widget messages than frames
    assert frames[-1][1][1] is False and TIPS["away"] in page.feedback.value


def test_calibration_completes_on_a_relaxed_face(page):
    face = astronaut()
    page.calibrate(0.3)
    start = time.time()
    for i in range(10):
        page._on_frame(face, start + i * 0.1)
    assert "Calibrated" in page.calibration.value
    assert page.analyzer.baseline is not None


def test_camera_errors_reach_the_feedback(page):
    page.camera.status = "denied"
    assert "Camera permission denied" in page.feedback.value


def test_closing_twice_is_harmless():
    p = StudentPage(Analyzer(mode="stream"))
    p.close()
    p.close()


def test_an_ended_session_turns_the_camera_off_until_the_next_one(page):
    page.consented = True
    try:
        page.set_paused(False)
        assert page.camera.active is True
        page._on_class({"session_id": None, "segment": None, "emotions": True, "ended": True})
        assert page.session_ended and page.paused and page.camera.active is False
        assert "ended the session" in page.feedback.value and "ended the session" in page.announce.text
        face = astronaut()
        before = page.last_observation
        page._on_frame(face, time.time())
        assert page.last_observation is before  # nothing measured for a session nobody records
        page.set_paused(False)  # Resume while the session is over: nothing to resume
        assert page.paused and page.camera.active is False and page.pause_button.value is True
        assert "until they start a new one" in page.feedback.value
        page._on_class({"session_id": "s2", "segment": None, "emotions": True, "ended": False})
        assert not page.session_ended and page.paused and "press Resume" in page.feedback.value
        page.set_paused(False)
        assert page.camera.active is True and not page.paused
    finally:
        page.session_ended = False
        page.set_paused(False)
        page.consented = False
        page._camera_on(False)


@pytest.mark.slow
def test_the_class_status_sets_segment_and_switches_emotions_off(page):
    clock = [time.time()]

    def state_of_the_smiling_astronaut() -> str:
        # Three seconds of frames: the smoothing lets a new state through only once it has lasted.
        for _ in range(30):
            clock[0] += 0.1
            page._on_frame(astronaut(), clock[0])
        return page.last_observation.state

    assert state_of_the_smiling_astronaut() == "happy"  # what emotions on shows, so off has something to remove
    page._on_class({"session_id": "s1", "segment": {"segment_id": "seg2", "title": "Exercise"}, "emotions": False})
    assert page.segment == "seg2" and page.analyzer.emotions is False
    assert not any(s in page.consent_text.value for s in EMOTION_STATES)
    assert state_of_the_smiling_astronaut() == "focused"
    page._on_class({"session_id": "s1", "segment": None, "emotions": True})
    assert page.segment is None and page.analyzer.emotions is True
    assert state_of_the_smiling_astronaut() == "happy"


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_outside_voila_and_shows_the_form():
    import nbformat
    from nbclient import NotebookClient

    from smartsession.pages import student

    root = __import__("pathlib").Path(student.__file__).resolve().parents[2]
    nb = nbformat.read(root / "dashboards" / "student.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the page displayed no widget"
    state = json.dumps(nb.metadata.get("widgets", {}))
    assert "Join your class" in state and "class id from your teacher" in state


def test_consent_says_what_leaves_the_device_in_each_mode():
    browser, server, unknown = (consent_html(True, mode) for mode in ("browser", "server", ""))
    assert "The picture never leaves this device" in browser and "sends a picture" not in browser
    assert "asks you again before any picture is sent" in browser
    assert "sends a picture from your camera to the class server" in server and "never leaves" not in server
    assert "What is measured" not in unknown and 'data-mode=""' in unknown


def test_browser_analysis_kernel_never_loads_mediapipe_or_opencv_nor_decodes_a_picture():
    """A student kernel in browser analysis mode, from the notebook's imports through packed faces analysed into
    states: MediaPipe and OpenCV are never imported, no picture is decoded, and pictures sent anyway are refused."""
    import subprocess
    import sys

    code = """
import json, sys, time
from smartsession.pages.student import StudentPage
from smartsession.vision import browser_assets, packed

page = StudentPage.preheat(analysis="browser", assets=browser_assets.asset_urls("/"))
face = packed.decode(bytes.fromhex(sys.stdin.read())).face
page.camera.mode = "browser"  # what the browser reports once its landmarker runs
page.consented = True  # what agreeing does, without the hub (see tests/browser for the whole page)
page.camera.accept_pictures = False
page._camera_on(True)
message = packed.encode_face(face, time.time())
for i in range(3):
    page.camera._on_custom(page.camera, {"type": "face", "seq": i, "t": time.time()}, [message])
    time.sleep(0.3)
now = time.time()
batch = [packed.encode_face(face, now + i / 10) for i in range(5)]
page.camera._on_custom(page.camera, {"type": "faces", "seq": 3, "t": now + 0.4}, batch)
time.sleep(0.3)
page.camera._on_custom(page.camera, {"type": "frame", "seq": 9, "t": time.time()}, [b"\\xff\\xd8\\xff" + bytes(100)])
deadline = time.time() + 30
while page.camera.face_counts["processed"] < 1 and time.time() < deadline:
    time.sleep(0.1)
obs = page.last_observation
print(json.dumps({"loaded": sorted(m for m in ("mediapipe", "cv2") if m in sys.modules),
                  "faces": page.camera.face_counts, "pictures": page.camera.counts,
                  "state": obs.state if obs else None, "face": obs.face if obs else None}))
page.close()
"""
    with Analyzer(mode="image") as analyzer:
        found = analyzer.landmarker.detect(astronaut())
    from smartsession.vision import packed

    message = packed.encode_face(found, 0.0).hex()
    out = subprocess.run([sys.executable, "-c", code], input=message, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []
    assert got["faces"]["processed"] >= 6 and got["faces"]["bad"] == 0, got
    assert got["pictures"]["received"] == 0 and got["pictures"]["refused"] == 1
    assert got["face"] is True and got["state"] in STATES


def test_analysis_mode_needs_its_assets_and_a_known_name():
    with pytest.raises(ValueError, match="assets"):
        StudentPage(object(), analysis="browser", assets={})
    with pytest.raises(ValueError, match="analysis must be one of"):
        StudentPage(object(), analysis="cloud")


def test_consent_follows_the_browsers_mode_and_a_late_fallback_asks_again():
    from smartsession.vision import browser_assets

    with Analyzer(mode="stream") as analyzer:
        page = StudentPage(analyzer, analysis="browser", assets=browser_assets.asset_urls("/"))
        assert page.agree_button.disabled and 'data-mode=""' in page.consent_text.value
        page.camera.mode = "browser"  # the landmarker loaded in the page
        assert not page.agree_button.disabled and 'data-mode="browser"' in page.consent_text.value
        # Agreed to browser analysis, then the browser turns out too slow: the camera stops, the page asks.
        page.consented = True
        page.camera.accept_pictures = False
        page._camera_on(True)
        page.camera.mode_detail = "this computer analyses 2.1 frames a second, fewer than 3.0"
        page.camera.mode = "server"
        assert not page.consented and not page.camera.active and not page.camera.accept_frames
        assert page.body.children == (page.consent,) and not page.agree_button.disabled
        assert "cannot be analysed in this browser: this computer analyses 2.1" in page.notice.value
        assert 'data-mode="server"' in page.consent_text.value
        page.close()


def test_a_batch_of_real_faces_is_one_redraw_and_one_message_with_every_frames_state():
    """Browser analysis: the camera's batch of packed faces (a real face, landmarked) is analysed in one call, drawn
    once, and its frames' states queued for the hub as one batch, each with its own capture time."""
    import asyncio
    import threading

    from smartsession.hub.client import StudentPublisher
    from smartsession.vision import browser_assets, packed

    with Analyzer(mode="image") as analyzer:
        found = analyzer.landmarker.detect(astronaut())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    acks = []
    try:
        with StudentPage(Analyzer(mode="stream"), analysis="browser", assets=browser_assets.asset_urls("/")) as page:
            page._loop = loop
            # A publisher that never connected: it stamps and keeps what the page publishes (its outbox).
            page._publisher = StudentPublisher("c1", "s1", "token", url="http://127.0.0.1:9")
            page.student_id = "s1"
            page.camera.send = lambda content, buffers=None: acks.append(content)
            page.consented = True
            page._camera_on(True)
            redraws = []
            page.feedback.observe(lambda change: redraws.append(change["new"]), names="value")
            now = time.time()
            times = [now + i / 12 for i in range(12)]


            async def handle():  # as the kernel does: the comm handler on its event loop
                page.camera._on_custom(page.camera, {"type": "faces", "seq": 1, "t": times[-1]},
                                       [packed.encode_face(found, t) for t in times])
                return len(redraws), len(page._publisher.outbox)  # when the handler returned

            drawn, queued = asyncio.run_coroutine_threadsafe(handle(), loop).result(30)
            outbox = list(page._publisher.outbox)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    # Analysed, drawn and queued for the hub before the handler returned: the kernel's "idle" for the message,
    # which follows it, acknowledges the batch, after its redraw. No ack message of its own.
    assert (drawn, queued) == (1, 12) and acks == []
    assert len(redraws) == 1 and "ss-feedback" in redraws[0]
    assert [m.t for m in outbox] == pytest.approx(times)
    assert all(b.seq > a.seq for a, b in zip(outbox, outbox[1:])) and {m.state for m in outbox} <= set(STATES)
    assert page.last_message is not None and page.last_message.seq == outbox[-1].seq
