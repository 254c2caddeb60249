"""Webcam data collection: features of real frames are recorded only while a prompt runs, never frames.

Frames come from a real face video, handed to the recorder as the camera widget would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartsession.classify.model import CLASSIFIER_STATES
from smartsession.dataset import build, media
from smartsession.dataset.collect import PROMPTS, FeatureRecorder
from smartsession.vision.frames import read_video


def _frames(n):
    return [vf for vf in read_video(media.pyfeat_file("single_face.mp4"), max_frames=n)]


def test_every_state_has_a_prompt():
    assert set(PROMPTS) == set(CLASSIFIER_STATES)


def test_records_features_only_during_a_prompt(tmp_path):
    path = tmp_path / "webcam.csv"
    frames = _frames(10)
    with FeatureRecorder(path, seconds=60) as recorder:
        for vf in frames[:3]:
            assert not recorder.record(vf.rgb, vf.t)
        assert not path.exists(), "nothing recorded before a prompt, not even an empty file"
        recorder.start("focused", "participant-1")
        recorded = [recorder.record(vf.rgb, vf.t) for vf in frames[3:]]
        assert all(recorded)
        assert recorder.counts()["focused"] == 7
        assert "Recording 'focused'" in recorder.status()
    table = pd.read_csv(path)
    assert list(table.columns) == list(build.read_feature_table().columns)
    assert len(table) == 7 and set(table["label"]) == {"focused"} and set(table["person"]) == {"participant-1"}
    assert np.isfinite(table[build.feature_columns(table)].to_numpy(dtype=float)).all()
    # a row is under a hundred named numbers (blendshapes included), never pixels or landmarks
    assert path.stat().st_size < 7 * 1000


def test_bad_prompts_get_clear_errors_and_closing_twice_is_harmless(tmp_path):
    recorder = FeatureRecorder(tmp_path / "webcam.csv", seconds=1)
    with pytest.raises(ValueError, match="choose one of"):
        recorder.start("bored", "p1")
    with pytest.raises(ValueError, match="participant id"):
        recorder.start("happy", "Jane Doe <jane@example.org>")
    recorder.close()
    recorder.close()
    recorder.start("happy", "p1")
    assert not recorder.record(_frames(1)[0].rgb, 0.0)
