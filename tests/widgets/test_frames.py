"""The back-pressure rule and the decode path, without a browser: latest frame wins, nothing piles up.

Real JPEG/PNG bytes of a real face go through the same code the kernel runs.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from smartsession.dataset.media import astronaut
from smartsession.widgets.frames import (
    FrameDecodeError,
    FrameDispatcher,
    FrameTiming,
    LatestFrame,
    MAX_FRAME_BYTES,
    PendingFrame,
    decode_image,
)

from framekit import huge_png


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def frame(seq: int, data: bytes = b"x") -> PendingFrame:
    return PendingFrame(seq=seq, t=time.time(), data=data, received=time.time())


def test_latest_frame_keeps_only_the_newest_waiting_frame():
    slot = LatestFrame()
    assert slot.offer(frame(1)) is None
    assert slot.offer(frame(2)).seq == 1
    assert slot.offer(frame(3)).seq == 2
    assert slot.take(0).seq == 3
    assert slot.take(0.01) is None  # nothing waiting: no old frame comes back


def test_latest_frame_close_returns_the_waiting_frame_and_refuses_new_ones():
    slot = LatestFrame()
    slot.offer(frame(1))
    assert slot.close().seq == 1
    late = frame(2)
    assert slot.offer(late) is late  # refused frames come straight back as dropped
    assert slot.take(0) is None
    assert slot.close() is None  # closing twice is harmless


def test_take_wakes_up_when_a_frame_arrives():
    slot = LatestFrame()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(5)))
    t.start()
    time.sleep(0.05)
    slot.offer(frame(7))
    t.join(5)
    assert [f.seq for f in got] == [7]


def test_decode_gives_rgb_in_the_right_channel_order():
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 220  # red
    out = decode_image(jpeg(rgb, 95))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 20


def test_decode_real_face_jpeg_and_png():
    face = astronaut()
    from_jpeg = decode_image(jpeg(face))
    assert from_jpeg.shape == face.shape
    assert np.abs(from_jpeg.astype(int) - face).mean() < 6  # JPEG is lossy, but close
    ok, png = cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    assert np.array_equal(decode_image(png.tobytes()), face)  # PNG is exact


@pytest.mark.parametrize("data, words", [(b"", "empty frame"), (b"not an image at all", "not a JPEG or PNG")])
def test_decode_refuses_bad_bytes_with_a_clear_message(data, words):
    with pytest.raises(FrameDecodeError, match=words):
        decode_image(data)


@pytest.mark.slow
def test_a_16000_pixel_png_is_refused_from_its_header_without_decoding():
    data = huge_png()
    assert len(data) < MAX_FRAME_BYTES
    # It is a real image: OpenCV reads it at an eighth of its size (2000x2000).
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape == (2000, 2000)
    with pytest.raises(FrameDecodeError, match="16000x16000 pixels is not a webcam frame"):
        decode_image(data)


@pytest.mark.slow
def test_refusing_the_huge_png_allocates_nothing_big():
    # Peak memory of a fresh process, which decoding even once would raise by ~0.8 GB.
    code = (
        "import resource, sys\n"
        "sys.path.insert(0, %r)\n"
        "from framekit import huge_png\n"
        "from smartsession.widgets.frames import FrameDecodeError, decode_image\n"
        "data = huge_png()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for _ in range(5):\n"
        "    try:\n"
        "        decode_image(data)\n"
        "    except FrameDecodeError:\n"
        "        pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    ) % str(__import__("pathlib").Path(__file__).parent)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grown_kb = int(result.stdout.split()[-1])
    assert grown_kb < 20_000, f"peak memory grew by {grown_kb} kB while refusing the frame"


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its start-of-frame claiming another size."""
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def test_oversized_or_sizeless_frames_are_refused_before_decoding():
    small = jpeg(astronaut())
    assert decode_image(small).shape == astronaut().shape
    with pytest.raises(FrameDecodeError, match="16000x12000 pixels is not a webcam frame"):
        decode_image(with_jpeg_size(small, 16000, 12000))
    with pytest.raises(FrameDecodeError, match="larger than a webcam frame"):
        decode_image(small + b"\x00" * MAX_FRAME_BYTES)
    # OpenCV reads BMP too, but a BMP says nothing we check: only JPEG and PNG are frames.
    bmp = cv2.imencode(".bmp", astronaut())[1].tobytes()
    with pytest.raises(FrameDecodeError, match="not a JPEG or PNG"):
        decode_image(bmp)


def test_slow_callback_drops_frames_and_every_frame_is_answered_once():
    done: list[tuple[int, bool]] = []
    seen: list[int] = []
    lock = threading.Lock()

    timings: list[FrameTiming | None] = []

    def record(f: PendingFrame, processed: bool, timing: FrameTiming | None) -> None:
        with lock:
            done.append((f.seq, processed))
            timings.append(timing)

    def slow(rgb: np.ndarray, t: float) -> None:
        assert rgb.shape == (64, 64, 3)
        seen.append(t)
        time.sleep(0.05)

    dispatcher = FrameDispatcher(record)
    dispatcher.add(slow)
    data = jpeg(np.full((64, 64, 3), 128, np.uint8))
    for seq in range(1, 101):  # 100 frames at ~500 fps against a 20 fps consumer
        dispatcher.submit(PendingFrame(seq=seq, t=float(seq), data=data, received=time.time()))
        time.sleep(0.002)
    deadline = time.monotonic() + 5
    while len(done) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    dispatcher.close()

    assert sorted(s for s, _ in done) == list(range(1, 101))  # each frame acknowledged exactly once
    processed = [s for s, ok in done if ok]
    assert 2 <= len(processed) <= 20  # most were dropped, not queued
    assert processed == sorted(processed)  # never an older frame after a newer one
    assert processed[-1] == 100  # the newest frame always gets processed
    assert seen == [float(s) for s in processed]  # callbacks got each frame's capture time
    assert dispatcher.counts == {"received": 100, "processed": len(processed), "dropped": 100 - len(processed),
                                 "bad": 0, "refused": 0, "errors": 0, "bytes": 100 * len(data), "messages": 100}
    # Processed frames say where their kernel time went; dropped ones have none to tell.
    for (_, ok), timing in zip(done, timings):
        assert (timing is not None) == ok
        if ok:
            assert timing.wait >= 0 and timing.decode > 0 and 0.05 <= timing.callbacks < 1.0


def test_bad_frames_and_failing_callbacks_do_not_stop_the_worker():
    done: list[tuple[int, bool]] = []
    good: list[int] = []
    dispatcher = FrameDispatcher(lambda f, ok, timing: done.append((f.seq, ok)))

    def failing(rgb, t):
        raise RuntimeError("boom")

    dispatcher.add(failing)
    dispatcher.add(lambda rgb, t: good.append(int(t)))
    image = jpeg(astronaut())
    for seq, data in [(1, b"garbage"), (2, image), (3, b""), (4, image)]:
        dispatcher.submit(PendingFrame(seq=seq, t=float(seq), data=data, received=time.time()))
        deadline = time.monotonic() + 5
        while len(done) < seq and time.monotonic() < deadline:
            time.sleep(0.005)
    dispatcher.close()
    assert done == [(1, False), (2, True), (3, False), (4, True)]
    assert good == [2, 4]
    assert dispatcher.counts["bad"] == 2 and dispatcher.counts["errors"] == 2
    assert "boom" in dispatcher.last_error


def test_on_frame_needs_a_function():
    dispatcher = FrameDispatcher(lambda f, ok, timing: None)
    with pytest.raises(TypeError, match="f\\(frame, t\\)"):
        dispatcher.add("not callable")
