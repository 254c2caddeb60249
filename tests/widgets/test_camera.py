"""The Camera widget's Python half: frame messages become RGB callbacks and acks; statuses read as plain words.

The browser half is exercised in tests/browser/test_student_camera.py.
"""

from __future__ import annotations

import time

import cv2
import pytest
import traitlets

from smartsession.dataset.media import astronaut
from smartsession.widgets.camera import ERROR_STATUSES, STATUS_MESSAGES, Camera, status_message

from framekit import huge_png


class Recorder:
    """Collects what the widget sends to the browser (the kernel's comm is not running in a unit test)."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def __call__(self, content, buffers=None) -> None:
        self.sent.append(content)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert predicate()


def test_frame_message_reaches_the_callback_as_rgb_and_is_acked():
    face = astronaut()
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    got = []
    with Camera() as camera:
        camera.send = sent = Recorder()
        camera.on_frame(lambda frame, t: got.append((frame.shape, t)))
        camera._on_custom(camera, {"type": "frame", "seq": 5, "t": 1700000000.25}, [memoryview(buf.tobytes())])
        wait_for(lambda: sent.sent)
    assert got == [(face.shape, 1700000000.25)]
    (ack,) = sent.sent
    timing = ack.pop("kernel_ms")  # where the kernel's time went, for the browser's breakdown
    assert ack == {"type": "ack", "seq": 5, "processed": True}
    assert set(timing) == {"wait", "decode", "callbacks"} and all(v >= 0 for v in timing.values())
    assert camera.counts["processed"] == 1


def test_malformed_frame_messages_are_counted_not_raised():
    with Camera() as camera:
        camera.send = Recorder()
        camera._on_custom(camera, {"type": "frame", "seq": "x"}, [b"abc"])
        camera._on_custom(camera, {"type": "frame", "seq": 1, "t": 2.0}, [])
        camera._on_custom(camera, {"type": "something else"}, [])
        camera._on_custom(camera, {"type": "frame", "seq": 2, "t": 2.0}, [b"not a jpeg"])
        wait_for(lambda: camera.counts["bad"] == 3)
        assert camera.send.sent == [{"type": "ack", "seq": 2, "processed": False}]


@pytest.mark.parametrize("switch", ["active", "accept_frames"])
def test_frames_are_not_decoded_while_the_camera_is_off(switch):
    face = astronaut()
    data = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
    got = []
    with Camera(**{switch: False}) as camera:
        camera.send = sent = Recorder()
        camera.on_frame(lambda frame, t: got.append(t))
        camera._on_custom(camera, {"type": "frame", "seq": 1, "t": 3.0}, [data])
        time.sleep(0.2)
        assert camera.counts["refused"] == 1 and camera.counts["received"] == 0
        assert sent.sent == [{"type": "ack", "seq": 1, "processed": False}]
        setattr(camera, switch, True)
        camera._on_custom(camera, {"type": "frame", "seq": 2, "t": 4.0}, [data])
        wait_for(lambda: got)
    assert got == [4.0]


def test_the_page_cannot_switch_on_frame_decoding():
    # accept_frames is the kernel's switch: a comm update from the page carries only synced traits.
    with Camera(active=False, accept_frames=False) as camera:
        assert "accept_frames" not in camera.get_state()
        camera.set_state({"active": True})  # what a page's comm_msg "update" does
        camera.send = Recorder()
        camera._on_custom(camera, {"type": "frame", "seq": 1, "t": 3.0}, [b"\xff\xd8 anything"])
        assert camera.counts["refused"] == 1 and camera.counts["received"] == 0


def test_an_oversized_frame_is_bad_not_decoded_and_acked():
    with Camera() as camera:
        camera.send = sent = Recorder()
        camera._on_custom(camera, {"type": "frame", "seq": 9, "t": 1.0}, [huge_png()])
        wait_for(lambda: sent.sent)
        assert camera.counts["bad"] == 1 and "16000x16000" in camera.last_error
    assert sent.sent == [{"type": "ack", "seq": 9, "processed": False}]


def test_removed_callbacks_stop_receiving():
    face = astronaut()
    data = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
    got = []
    callback = lambda frame, t: got.append(t)  # noqa: E731
    with Camera() as camera:
        camera.send = sent = Recorder()
        camera.on_frame(callback)
        camera.on_frame(callback, remove=True)
        camera._on_custom(camera, {"type": "frame", "seq": 1, "t": 3.0}, [data])
        wait_for(lambda: sent.sent)
    assert got == []


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_every_error_status_says_what_to_do(status):
    with Camera() as camera:
        camera.status = status
        assert camera.message == STATUS_MESSAGES[status]
    verbs = ("allow", "plug", "close", "open", "press", "reload")
    assert any(v in camera.message.lower() for v in verbs), camera.message


def test_insecure_origin_explains_https_or_localhost():
    assert "https" in STATUS_MESSAGES["insecure"] and "localhost" in STATUS_MESSAGES["insecure"]


def test_unknown_status_and_error_detail_read_as_a_generic_error():
    assert status_message("weird").startswith(STATUS_MESSAGES["error"]) and "weird" in status_message("weird")
    with Camera() as camera:
        camera.detail = "TypeError: boom"
        camera.status = "error"
        assert "TypeError: boom" in camera.message


def test_bad_settings_are_refused_with_the_allowed_range():
    with pytest.raises(traitlets.TraitError, match="between 0.5 and 30"):
        Camera(fps=120)
    with pytest.raises(traitlets.TraitError, match="between 1 and 8"):
        Camera(max_in_flight=0)
    with pytest.raises(traitlets.TraitError, match="picture_fps must be 0 .* or between 0.5 and 30"):
        Camera(picture_fps=60)


def test_closing_twice_is_harmless():
    camera = Camera()
    camera.close()
    camera.close()


def test_webrtc_snapshots_are_not_decoded_while_paused():
    from smartsession.widgets.webrtc import WebRTCCamera

    data = cv2.imencode(".jpg", cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    got = []
    with WebRTCCamera(active=False) as camera:
        camera.on_frame(lambda frame, t: got.append(frame.shape))
        camera.recorder.image.value = data  # what the browser's snapshot does
        assert camera.counts["refused"] == 1 and camera.counts["received"] == 0
        camera.active = True
        camera.recorder.image.value = data + b"\x00"  # a new value, so the trait changes
        wait_for(lambda: got)
    assert got == [astronaut().shape]


# --- packed faces in batches (browser analysis) ---


@pytest.fixture(scope="module")
def astronaut_face():
    from smartsession.vision.landmarks import FaceLandmarker

    with FaceLandmarker(static_image_mode=True) as lm:
        face = lm.detect(astronaut())
    assert face.face
    return face


def batch_of(face, times):
    from smartsession.vision import packed

    return [packed.encode_face(face, t) for t in times]


def test_a_batch_is_analysed_in_its_handler_once_by_on_faces_and_per_face_by_on_face(astronaut_face):
    times = [1700000000.0 + i / 10 for i in range(12)]
    batches, each = [], []
    with Camera(analysis="browser") as camera:
        camera.send = sent = Recorder()
        camera.on_faces(lambda faces, ts: batches.append((len(faces), ts)))
        camera.on_face(lambda face, t: each.append(t))
        camera._on_custom(camera, {"type": "faces", "seq": 3, "t": times[-1]}, [memoryview(b) for b in batch_of(astronaut_face, times)])
        # Done when the handler returns: the kernel's "idle" for the message, which follows, is the page's ack.
        assert batches == [(12, pytest.approx(times))] and each == pytest.approx(times)
        assert sent.sent == []
        assert camera.face_counts["messages"] == 1 and camera.face_counts["processed"] == 12


def test_the_page_counters_ride_on_a_batch_and_are_not_sent_back(astronaut_face):
    seen = []
    with Camera(analysis="browser") as camera:
        camera.observe(lambda change: seen.append(change["new"]), names="stats")
        messages = []
        camera._send = lambda msg, buffers=None: messages.append(msg)  # every message to the page
        stats = {"sent": 40, "skipped": 0, "processed": 35, "rtt_ms_p90": 1100.5}
        camera._on_custom(camera, {"type": "faces", "seq": 1, "t": 1.0, "stats": stats}, batch_of(astronaut_face, [1.0]))
        assert camera.stats == stats and seen == [stats]
        assert messages == []  # no echo, no update, no ack: the idle acknowledges the batch
        camera._on_custom(camera, {"type": "faces", "seq": 2, "t": 1.1, "stats": {"sent": float("nan")}},
                          batch_of(astronaut_face, [1.1]))
        assert camera.stats == stats and camera.face_counts["bad"] == 1  # refused whole, with its counters


@pytest.mark.parametrize("problem", ["too many", "none", "oversized face", "garbage face", "out of order"])
def test_a_malformed_or_oversized_batch_is_refused_whole_and_the_next_one_analysed(astronaut_face, problem):
    good = batch_of(astronaut_face, [5.0, 5.1])
    bad = {
        "too many": batch_of(astronaut_face, [1.0 + i / 100 for i in range(31)]),
        "none": [],
        "oversized face": [good[0], good[1] + b"\x00" * 10_000],
        "garbage face": [good[0], b"SSF1" + b"\x00" * 40],
        "out of order": batch_of(astronaut_face, [2.0, 1.0]),
    }[problem]
    got = []
    with Camera(analysis="browser") as camera:
        camera.send = sent = Recorder()
        camera.on_faces(lambda faces, ts: got.append(ts))
        camera._on_custom(camera, {"type": "faces", "seq": 1, "t": 5.0}, bad)
        camera._on_custom(camera, {"type": "faces", "seq": 2, "t": 5.1}, good)
        assert camera.face_counts["bad"] == 1 and camera.last_error
    # The refused batch is answered by an ack saying so; the analysed one by the kernel's idle alone.
    assert [(a["seq"], a["processed"]) for a in sent.sent] == [(1, False)]
    assert got == [pytest.approx([5.0, 5.1])]  # nothing of the bad batch reached the analysis


def test_the_batch_bound_is_a_setting_the_kernel_enforces(astronaut_face):
    with Camera(analysis="browser", max_batch=4) as camera:
        camera.send = sent = Recorder()
        camera._on_custom(camera, {"type": "faces", "seq": 1, "t": 1.4}, batch_of(astronaut_face, [1.0, 1.1, 1.2, 1.3, 1.4]))
        assert camera.face_counts["bad"] == 1 and "1-4 faces" in camera.last_error
    assert sent.sent == [{"type": "ack", "seq": 1, "processed": False}]
    with pytest.raises(traitlets.TraitError, match="between 1 and 30"):
        Camera(max_batch=31)
    with pytest.raises(traitlets.TraitError, match="0 \\(a message a face\\) or between 0.25 and 2.0"):
        Camera(batch_seconds=5)
    assert Camera(batch_seconds=0).batch_seconds == 0  # the per-frame transport


def test_batches_are_refused_while_the_camera_is_off(astronaut_face):
    got = []
    with Camera(analysis="browser", accept_frames=False) as camera:
        camera.send = sent = Recorder()
        camera.on_faces(lambda faces, ts: got.append(ts))
        camera._on_custom(camera, {"type": "faces", "seq": 1, "t": 1.1}, batch_of(astronaut_face, [1.0, 1.1]))
        assert camera.face_counts["refused"] == 1 and camera.face_counts["received"] == 0
    assert got == [] and sent.sent == [{"type": "ack", "seq": 1, "processed": False, "frames": 2}]


def test_removed_face_callbacks_stop_receiving(astronaut_face):
    got = []
    callback = lambda faces, ts: got.append(ts)  # noqa: E731
    with Camera(analysis="browser") as camera:
        camera.send = sent = Recorder()
        camera.on_faces(callback)
        camera.on_faces(callback, remove=True)
        camera._on_custom(camera, {"type": "faces", "seq": 1, "t": 1.0}, batch_of(astronaut_face, [1.0]))
        assert camera.face_counts["processed"] == 1
    assert got == [] and sent.sent == []


@pytest.mark.parametrize("content, says", [
    ({"type": "frame", "seq": 1, "t": float("nan")}, "message.t is not a finite number"),
    ({"type": "frame", "seq": 1, "t": float("inf")}, "message.t is not a finite number"),
    ({"type": "frame", "seq": 1, "t": 3.0, "extra": [1.0, float("-inf")]}, "message.extra.1 is not a finite"),
    ({"type": "frame", "seq": 1, "t": -5.0}, "t must be the capture time"),
    ({"type": "frame", "seq": 1, "t": True}, "t must be the capture time"),
])
def test_non_finite_numbers_are_refused_with_a_reason_and_the_next_frame_works(content, says):
    face = astronaut()
    data = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
    got = []
    with Camera() as camera:
        camera.send = sent = Recorder()
        camera.on_frame(lambda frame, t: got.append(t))
        camera._on_custom(camera, content, [data])
        assert sent.sent and sent.sent[0]["processed"] is False and says in sent.sent[0]["error"], sent.sent
        camera._on_custom(camera, {"type": "frame", "seq": 2, "t": 4.0}, [data])
        wait_for(lambda: got == [4.0])
    assert camera.counts["bad"] == 1 and camera.counts["processed"] == 1


def test_a_page_that_floods_batches_gets_no_more_analysed_than_a_camera_sends(astronaut_face):
    """Batches are analysed in the handler (no newest-wins slot): past a camera's rate the kernel refuses them."""
    from smartsession.widgets.camera import MAX_FACES_PER_SECOND, FaceBudget

    analysed = []
    with Camera(analysis="browser") as camera:
        camera.send = sent = Recorder()
        camera.on_faces(lambda faces, ts: analysed.append(len(faces)))
        faces = batch_of(astronaut_face, [1.0 + i / 30 for i in range(30)])
        for seq in range(10):  # ten full batches at once, not waiting for any idle
            camera._on_custom(camera, {"type": "faces", "seq": seq, "t": 2.0}, faces)
    assert sum(analysed) <= 3 * MAX_FACES_PER_SECOND  # the burst, and what a second or so refilled
    refused = [a for a in sent.sent if a["processed"] is False]
    assert len(refused) == 10 - len(analysed) and camera.face_counts["dropped"] == 30 * len(refused)
    assert "faces a second" in camera.last_error
    budget = FaceBudget(rate=30, burst=60)  # the rule, on a clock of its own
    assert budget.take(30, 0.0) and budget.take(30, 0.0) and not budget.take(1, 0.0)
    assert budget.take(15, 0.5) and not budget.take(1, 0.5) and budget.take(30, 1.5)


def test_a_page_that_floods_pictures_gets_no_more_decoded_than_its_picture_rate():
    """A picture is a whole face analysis: past picture_fps (a second's burst) the kernel refuses them undecoded,
    the page hears why in the ack, and a picture at the page's own pace is taken again."""
    face = astronaut()
    data = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
    decoded = []
    with Camera(fps=12, picture_fps=5) as camera:
        camera.send = sent = Recorder()
        camera.on_frame(lambda frame, t: decoded.append(t))
        for seq in range(20):  # twenty pictures at once, none waiting for its ack
            camera._on_custom(camera, {"type": "frame", "seq": seq, "t": 2.0 + seq / 100}, [data])
        wait_for(lambda: len(sent.sent) == 20)  # every one acknowledged, taken or not
        assert 1 <= len(decoded) <= 6 and camera.counts["dropped"] >= 14  # the burst (5), what refilled meanwhile
        assert "more than 5 pictures a second" in camera.last_error
        time.sleep(0.25)  # one interval later: the next picture is taken
        camera._on_custom(camera, {"type": "frame", "seq": 99, "t": 3.0}, [data])
        wait_for(lambda: any(a["seq"] == 99 for a in sent.sent))
    assert [a["processed"] for a in sent.sent if a["seq"] == 99] == [True]
    # A page at its own pace, with a tick's jitter, is never refused: the rule on a clock of its own.
    from smartsession.widgets.camera import FaceBudget

    budget = FaceBudget(rate=5, burst=5)
    assert all(budget.take(1, i / 5 + (0.08 if i % 2 else -0.08)) for i in range(1, 200))


# --- batches through serve's face pipe (widgets/pipe.py gives them to receive_batch) ---


def piped(seq, faces, t=None, **header) -> bytes:
    import json

    from smartsession.vision import packed

    head = json.dumps({"t": t, "sizes": [len(f) for f in faces], **header}).encode()
    return packed.BATCH_PREFIX.pack(seq, len(head)) + head + b"".join(faces)


def test_a_piped_batch_is_analysed_as_a_comm_batch_and_acked_through_the_pipe(astronaut_face):
    times = [1700000000.0 + i / 6 for i in range(4)]
    batches, acks = [], []
    stats = {"sent": 4, "skipped": 0, "processed": 0}
    with Camera(analysis="browser") as camera:
        camera.send = sent = Recorder()
        camera._pipe_reply = acks.append
        camera.on_faces(lambda faces, ts: batches.append(ts))
        camera.receive_batch(piped(9, batch_of(astronaut_face, times), t=times[-1], stats=stats))
        assert batches == [pytest.approx(times)] and camera.stats == stats
        assert camera.face_counts["messages"] == 1 and camera.face_counts["processed"] == 4
    assert sent.sent == []  # nothing over the comm: the ack went through the pipe, with the kernel's timings
    assert [(a["seq"], a["processed"], a["frames"]) for a in acks] == [(9, True, 4)]
    assert set(acks[0]["kernel_ms"]) == {"wait", "decode", "callbacks"} and acks[0]["at"] > times[0]


@pytest.mark.parametrize("problem", ["picture", "sizes lie", "header", "too many", "bad time", "camera off"])
def test_a_bad_piped_batch_is_refused_by_its_number_and_the_next_one_analysed(astronaut_face, problem):
    import numpy as np

    good = batch_of(astronaut_face, [5.0, 5.1])
    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    bad = {
        "picture": piped(1, [jpeg], t=5.0),  # a page trying to make a browser-mode kernel decode an image
        "sizes lie": piped(1, good, t=5.0)[:-3],
        "header": b"\x01\x00\x00\x00\x05\x00\x00\x00{oops" + good[0],
        "too many": piped(1, batch_of(astronaut_face, [1.0 + i / 100 for i in range(31)]), t=1.3),
        "bad time": piped(1, good, t=float("nan")),
        "camera off": piped(1, good, t=5.0),
    }[problem]
    got, acks = [], []
    with Camera(analysis="browser") as camera:
        camera._pipe_reply = acks.append
        camera.on_faces(lambda faces, ts: got.append(ts))
        camera.accept_frames = problem != "camera off"
        camera.receive_batch(bad)
        camera.accept_frames = True
        camera.receive_batch(piped(2, good, t=5.1))
    assert [(a["seq"], a["processed"]) for a in acks] == [(1, False), (2, True)]
    assert got == [pytest.approx([5.0, 5.1])]  # nothing of the bad batch reached the analysis
