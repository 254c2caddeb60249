"""Frames in: decode JPEG/PNG bytes, image files, numpy arrays, video files and webcams into RGB uint8.

The first arrow of the pipeline; bad input stops here with a :class:`FrameError` that says what to do.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from smartsession.vision.native_stderr import quiet_stderr

# OpenCV is imported by the functions that use it: a kernel in browser analysis mode decodes no pictures and
# never loads it.
if TYPE_CHECKING:
    import cv2

#: Images with more pixels than this are refused before decoding (a 100-megapixel frame is not a webcam frame
#: and would cost gigabytes to decode).
MAX_PIXELS = 100_000_000
#: Frames whose longer side exceeds this are downscaled; the landmarker and its detector work on far smaller inputs.
MAX_SIDE = 1920

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FrameError(ValueError):
    """A frame or file that cannot be analysed; ``str(err)`` says why and what to do."""


def _check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_PIXELS:
        raise FrameError(
            f"{what} is {width}x{height} pixels ({width * height / 1e6:.0f} MP), more than the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit: downscale it (for example to 1920 pixels wide) and retry"
        )


def bound_size(rgb: np.ndarray) -> np.ndarray:
    """Downscale a frame whose longer side exceeds :data:`MAX_SIDE`, keeping its aspect ratio."""
    import cv2
    h, w = rgb.shape[:2]
    side = max(h, w)
    if side <= MAX_SIDE:
        return rgb
    scale = MAX_SIDE / side
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def from_array(array: np.ndarray) -> np.ndarray:
    """Validate an RGB(A)/grey numpy image and return a contiguous, size-bounded RGB uint8 array."""
    import cv2
    if not isinstance(array, np.ndarray):
        raise FrameError(f"expected image bytes or a numpy array, got {type(array).__name__}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise FrameError(
            f"expected an image array of shape (height, width, 3), got shape {array.shape}"
        )
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise FrameError(f"image array of shape {array.shape} is empty or too small to hold a face")
    _check_pixels(array.shape[1], array.shape[0], "image array")
    if array.dtype != np.uint8:
        if array.dtype.kind == "f" and array.size and np.nanmax(array) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    elif array.shape[2] == 1:
        array = cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(bound_size(array))


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header without decoding pixels; None for other formats."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(_JPEG_SOI):
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        # Start-of-frame markers (baseline, progressive, ...) carry the size; C4/C8/CC are not frames.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def decode(data: bytes | bytearray | memoryview, name: str = "frame") -> np.ndarray:
    """Decode JPEG/PNG (or any OpenCV-readable) bytes into a size-bounded RGB uint8 array."""
    import cv2
    data = bytes(data)
    if not data:
        raise FrameError(f"{name}: zero-byte file or empty frame; nothing to analyse")
    is_jpeg = data.startswith(_JPEG_SOI)
    if is_jpeg:
        # A JPEG cut short (interrupted upload or copy) lacks its end-of-image marker; OpenCV would
        # otherwise decode it with a grey band and only a warning on stderr.
        if not data.rstrip(b"\x00\r\n ").endswith(_JPEG_EOI):
            raise FrameError(
                f"{name}: truncated or corrupt JPEG (no end-of-image marker); re-export or re-copy the file"
            )
    size = _header_size(data)
    if size is not None:
        _check_pixels(size[0], size[1], name)
    buf = np.frombuffer(data, dtype=np.uint8)
    with quiet_stderr():  # libpng/libjpeg complain on stderr before we raise our own clear error
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        if is_jpeg:
            raise FrameError(f"{name}: corrupt JPEG that cannot be decoded; re-export or re-copy the file")
        if data.startswith(_PNG_SIGNATURE):
            raise FrameError(f"{name}: truncated or corrupt PNG that cannot be decoded; re-export the file")
        head = data[:16]
        raise FrameError(
            f"{name}: not an image (starts with {head!r}); give a JPEG or PNG file, a video or a folder of images"
        )
    _check_pixels(bgr.shape[1], bgr.shape[0], name)
    return np.ascontiguousarray(bound_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def to_rgb(frame: np.ndarray | bytes | bytearray | memoryview, name: str = "frame") -> np.ndarray:
    """Any supported frame (numpy array or encoded bytes) as a contiguous RGB uint8 array."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return decode(frame, name)
    return from_array(frame)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into RGB uint8, with a :class:`FrameError` naming the file on any problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FrameError(f"{path}: cannot read the file ({exc.strerror or exc}); check the path and permissions") from None
    return decode(data, str(path))


@dataclass(frozen=True)
class VideoFrame:
    """One frame read from a video file or camera: its index, media time in seconds and pixels."""

    index: int
    t: float
    rgb: np.ndarray


def _sampled(cap: cv2.VideoCapture, name: str, fps: float | None, native_fps: float,
             max_frames: int | None, live: bool = False) -> Iterator[VideoFrame]:
    """Frames of an opened capture; ``live`` (webcams) stamps them with the clock, files with their position."""
    import cv2
    start = time.monotonic()
    next_t = 0.0
    index = -1
    kept = 0
    try:
        while max_frames is None or kept < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            index += 1
            t = time.monotonic() - start if live else index / native_fps
            if fps is not None:
                # Time-based sampling keeps N frames per second of media whatever the native rate.
                if t + 1e-9 < next_t:
                    continue
                next_t += 1.0 / fps
                while next_t <= t:
                    next_t += 1.0 / fps
            _check_pixels(bgr.shape[1], bgr.shape[0], name)
            kept += 1
            yield VideoFrame(index, t, np.ascontiguousarray(bound_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
    finally:
        cap.release()


def video_info(path: str | os.PathLike) -> tuple[float, int]:
    """(frames per second, frame count) of a video file; the count may be 0 when the container hides it."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FrameError(f"{path}: cannot open the video; check that it is a readable video file")
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return (fps if math.isfinite(fps) and fps > 0 else 30.0), max(count, 0)


def read_video(path: str | os.PathLike, fps: float | None = None,
               max_frames: int | None = None) -> Iterator[VideoFrame]:
    """Frames of a video file; with ``fps`` keep about that many frames per second of video."""
    import cv2
    if fps is not None and not fps > 0:
        raise FrameError(f"--fps must be a positive number, got {fps}")
    path = Path(path)
    if not path.is_file():
        raise FrameError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise FrameError(f"{path}: zero-byte file; nothing to analyse")
    native, _ = video_info(path)
    cap = cv2.VideoCapture(str(path))
    return _sampled(cap, str(path), fps, native, max_frames)


def read_camera(index: int, fps: float | None = None, max_frames: int | None = None) -> Iterator[VideoFrame]:
    """Frames from a local webcam (OpenCV device index); stops after ``max_frames`` if given."""
    import cv2
    cap = cv2.VideoCapture(int(index))
    if not cap.isOpened():
        cap.release()
        raise FrameError(
            f"camera {index}: cannot open it; check that a webcam is connected, not used by another "
            "program, and that this user may access it (e.g. the 'video' group)"
        )
    native = cap.get(cv2.CAP_PROP_FPS)
    native = native if math.isfinite(native) and native > 0 else 30.0
    return _sampled(cap, f"camera {index}", fps, native, max_frames, live=True)
