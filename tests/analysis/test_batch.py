"""A batch of browser-landmarked faces gives the same observations, frame for frame, as one face at a time."""

from __future__ import annotations

import numpy as np
import pytest

from smartsession.analysis import Analyzer
from smartsession.vision import packed
from smartsession.vision.landmarks import FaceLandmarker


@pytest.fixture(scope="module")
def packed_faces(video_frames):
    """A real face video as the browser would send it: each frame landmarked in stream mode, packed and decoded;
    a stretch with no face (black frames) in the middle, as when the student leaves the camera."""
    frames = video_frames("single_face.mp4", count=90)
    frames[40:52] = [np.zeros_like(frames[0])] * 12
    faces = []
    with FaceLandmarker() as lm:
        for i, rgb in enumerate(frames):
            t = i / 10
            faces.append(packed.decode(packed.encode_face(lm.detect(rgb, t=t), t)).face)
    assert len(faces) >= 60 and sum(f.face for f in faces) >= len(faces) - 20
    return faces


def one_by_one(faces, state_model, calibrate: bool):
    with Analyzer(mode="stream", model=state_model) as analyzer:
        if calibrate:
            analyzer.start_calibration(2.0)
        return [analyzer.process_face(face, t=i / 10) for i, face in enumerate(faces)], analyzer.baseline


def in_batches(faces, state_model, calibrate: bool, sizes):
    out = []
    with Analyzer(mode="stream", model=state_model) as analyzer:
        if calibrate:
            analyzer.start_calibration(2.0)
        at, k = 0, 0
        while at < len(faces):
            n = sizes[k % len(sizes)]
            chunk = faces[at:at + n]
            out += analyzer.process_faces(chunk, [i / 10 for i in range(at, at + len(chunk))])
            at, k = at + n, k + 1
        return out, analyzer.baseline


@pytest.mark.parametrize("calibrate", [False, True], ids=["plain", "calibration-ends-mid-batch"])
def test_batches_give_the_same_observations_frame_for_frame(packed_faces, state_model, calibrate):
    expected, baseline = one_by_one(packed_faces, state_model, calibrate)
    # Uneven batch sizes, so batch edges fall everywhere (the calibration's 2 s end inside a batch of 7).
    got, batch_baseline = in_batches(packed_faces, state_model, calibrate, sizes=[7, 12, 1, 5, 30])
    assert len(got) == len(expected) == len(packed_faces)
    assert (baseline is None) == (batch_baseline is None) == (not calibrate)
    for a, b in zip(expected, got):
        assert (a.frame, a.face, a.state, a.reason) == (b.frame, b.face, b.state, b.reason)
        assert b.media_time == a.media_time
        assert b.engagement == pytest.approx(a.engagement, abs=1e-9)
        assert b.confidence == pytest.approx(a.confidence, abs=1e-9)
        assert b.engagement_components == pytest.approx(a.engagement_components, abs=1e-9)
    assert len({o.state for o in got}) >= 2  # the video and its faceless stretch are not one state throughout


def test_a_batch_needs_one_time_per_face(packed_faces, state_model):
    with Analyzer(mode="stream", model=state_model) as analyzer:
        with pytest.raises(ValueError, match="one time per face"):
            analyzer.process_faces(packed_faces[:3], [0.0, 0.1])
        assert analyzer.process_faces([], []) == []
