"""Frames in: decoding, size bounds and clear errors for every kind of bad input; video sampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smartsession.dataset.media import pyfeat_file
from smartsession.vision import frames
from smartsession.vision.frames import FrameError


def test_decodes_jpeg_and_png_bytes_to_rgb():
    path = pyfeat_file("single_face.jpg")
    rgb = frames.decode(path.read_bytes())
    bgr = cv2.imread(str(path))
    assert rgb.dtype == np.uint8 and rgb.shape == bgr.shape
    assert np.array_equal(rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    png = cv2.imencode(".png", bgr)[1].tobytes()
    assert np.array_equal(frames.to_rgb(png), rgb)


def test_arrays_are_normalised():
    grey = np.full((40, 50), 7, np.uint8)
    assert frames.to_rgb(grey).shape == (40, 50, 3)
    rgba = np.zeros((40, 50, 4), np.uint8)
    assert frames.to_rgb(rgba).shape == (40, 50, 3)
    unit = np.full((40, 50, 3), 1.0)
    assert frames.to_rgb(unit).max() == 255
    with pytest.raises(FrameError, match="shape"):
        frames.to_rgb(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(FrameError, match="numpy array"):
        frames.to_rgb("not a frame")


def test_large_frames_are_downscaled_keeping_aspect():
    big = np.zeros((2400, 3200, 3), np.uint8)
    out = frames.to_rgb(big)
    assert max(out.shape[:2]) == frames.MAX_SIDE and out.shape[:2] == (1440, 1920)


def test_zero_byte(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(FrameError, match=r"empty\.jpg: zero-byte"):
        frames.read_image(empty)


def test_truncated_jpeg_cut_from_a_real_one(tmp_path):
    data = pyfeat_file("single_face.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match=r"cut\.jpg: truncated or corrupt JPEG"):
        frames.read_image(cut)


def test_corrupt_jpeg(tmp_path):
    data = bytearray(pyfeat_file("single_face.jpg").read_bytes())
    # Keep the start and end markers but destroy the headers in between.
    data[2:600] = bytes(598)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bytes(data))
    with pytest.raises(FrameError, match=r"bad\.jpg: corrupt JPEG"):
        frames.read_image(bad)


def test_truncated_png(capfd):
    from smartsession.dataset.media import astronaut

    data = cv2.imencode(".png", astronaut())[1].tobytes()
    with pytest.raises(FrameError, match=r"half\.png: truncated or corrupt PNG"):
        frames.decode(data[: len(data) // 2], "half.png")
    assert capfd.readouterr().err == ""  # libpng's own complaint is kept off the terminal


def test_text_file_renamed_jpg(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are my lecture notes\n")
    with pytest.raises(FrameError, match=r"notes\.jpg: not an image"):
        frames.read_image(fake)


def test_huge_image_is_refused_before_decoding(tmp_path):
    # A real PNG of 11000 x 10000 grey pixels: small on disk, 110 MP to decode.
    huge = tmp_path / "huge.png"
    assert cv2.imwrite(str(huge), np.zeros((10000, 11000), np.uint8))
    with pytest.raises(FrameError, match=r"huge\.png is 11000x10000 pixels.*downscale"):
        frames.read_image(huge)
    with pytest.raises(FrameError, match="downscale"):
        frames.from_array(np.broadcast_to(np.uint8(0), (10000, 11000, 3)))


def test_jpeg_claiming_huge_dimensions_is_refused_from_its_header(tmp_path):
    # A real JPEG whose frame header is edited to claim 12000 x 12000 pixels (a decompression bomb).
    data = bytearray(pyfeat_file("single_face.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5:sof + 9] = (12000).to_bytes(2, "big") * 2
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    with pytest.raises(FrameError, match=r"bomb\.jpg is 12000x12000 pixels"):
        frames.read_image(bomb)


def test_unreadable_path(tmp_path):
    with pytest.raises(FrameError, match="cannot read"):
        frames.read_image(tmp_path / "missing.jpg")


def test_video_every_frame_and_sampled():
    path = pyfeat_file("single_face.mp4")
    native, count = frames.video_info(path)
    every = list(frames.read_video(path))
    assert len(every) == count and every[0].index == 0 and every[-1].t == pytest.approx((count - 1) / native)
    sampled = list(frames.read_video(path, fps=5))
    duration = count / native
    assert abs(len(sampled) - duration * 5) <= 1.5
    gaps = np.diff([f.t for f in sampled])
    assert np.allclose(gaps, 0.2, atol=1.0 / native + 1e-6)
    assert sampled[0].rgb.shape == every[0].rgb.shape and sampled[0].rgb.dtype == np.uint8


def test_video_errors(tmp_path):
    with pytest.raises(FrameError, match="no such file"):
        list(frames.read_video(tmp_path / "nope.mp4"))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(FrameError, match="zero-byte"):
        list(frames.read_video(empty))
    with pytest.raises(FrameError, match="positive"):
        list(frames.read_video(pyfeat_file("single_face.mp4"), fps=0))


def test_missing_webcam_is_a_clear_error():
    with pytest.raises(FrameError, match="camera 99: cannot open it; check that a webcam is connected"):
        frames.read_camera(99)


def test_quiet_stderr_nested_and_concurrent_blocks_restore_fd2(capfd):
    import os
    import threading

    from smartsession.vision.native_stderr import quiet_stderr

    def noisy():
        for _ in range(200):
            with quiet_stderr():
                os.write(2, b"native noise\n")

    threads = [threading.Thread(target=noisy) for _ in range(4)]
    for th in threads:
        th.start()
    with quiet_stderr():
        with quiet_stderr():
            os.write(2, b"nested noise\n")
    for th in threads:
        th.join()
    os.write(2, b"still visible\n")
    assert capfd.readouterr().err == "still visible\n"
