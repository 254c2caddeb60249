"""Rules, engagement, smoothing and calibration on real landmarks and features (no classifier involved)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from smartsession.classify import engagement, rules
from smartsession.classify.calibration import Baseline, Calibration, CalibrationError
from smartsession.classify.smoothing import StateSmoother
from smartsession.features import FEATURE_NAMES, face_vector
from smartsession.vision.landmarks import FaceLandmarks

I = {n: i for i, n in enumerate(FEATURE_NAMES)}
UPPER_LIDS = (160, 158, 159, 387, 385, 386)
LOWER_LIDS = (144, 153, 145, 373, 380, 374)


@pytest.fixture(scope="module")
def astronaut_face(image_landmarker, photo):
    return image_landmarker.detect(photo("astronaut"))


def closed_eyes(face):
    """The same face with each upper-lid point moved almost onto its lower-lid partner."""
    lm = face.landmarks.copy()
    for up, low in zip(UPPER_LIDS, LOWER_LIDS):
        lm[up] = lm[low] + 0.08 * (face.landmarks[up] - face.landmarks[low])
    return replace(face, landmarks=lm)


def test_edited_eye_closure_turns_drowsy_only_after_the_time_threshold(astronaut_face):
    open_v, shut_v = face_vector(astronaut_face), face_vector(closed_eyes(astronaut_face))
    assert open_v[I["ear"]] > 0.2 and shut_v[I["ear"]] < 0.05
    assert not rules.eyes_closed(open_v[I["ear"]]) and rules.eyes_closed(shut_v[I["ear"]])
    for fps in (5, 30):  # the threshold is in seconds, not frames
        closure = rules.EyeClosure()
        verdicts = [(i / fps, closure.update(i / fps, True)) for i in range(int(3 * fps))]
        first = next(t for t, v in verdicts if v is not None)
        assert first == pytest.approx(rules.DROWSY_SECONDS, abs=1.0 / fps)
        assert verdicts[-1][1].state == "drowsy" and "eyes closed" in verdicts[-1][1].reason
        assert closure.update(3.1, False) is None and closure.update(3.2, True) is None  # opening resets


def test_blinks_never_make_drowsy():
    closure = rules.EyeClosure()
    for i in range(300):  # 10 s at 30 fps, a 0.3 s blink every 2 s
        t = i / 30
        assert closure.update(t, (t % 2.0) < 0.3) is None


def test_a_smile_squint_is_not_closed_eyes():
    assert rules.eyes_closed(0.08, lip_corner_lift=0.0)
    assert not rules.eyes_closed(0.08, lip_corner_lift=0.21)  # laughing frame of WolfgangLanger_Pexels.mp4


def test_calibrated_eye_closure_is_relative_to_the_person():
    # Someone whose eyes rest narrow (EAR 0.20) is not "closed" at 0.085 once calibrated; shut lids still are.
    assert rules.eyes_closed(0.085) and not rules.eyes_closed(0.085, baseline_ear=0.20)
    assert rules.eyes_closed(0.05, baseline_ear=0.20)


def test_eyes_lowered_to_a_desk_are_not_closed():
    # Frames 0-14 of WolfgangLanger_Pexels.mp4 (eyes cast down) read EAR 0.10-0.12; shut lids ~0.05.
    assert not rules.eyes_closed(0.10) and rules.eyes_closed(0.05)


def test_turned_head_with_eyes_aside_is_distracted(image_landmarker, photo):
    v = face_vector(image_landmarker.detect(photo("45-m7-di-ph.jpg")))
    verdict = rules.attention_verdict(v)
    assert verdict.state == "distracted" and "looking aside" in verdict.reason
    frontal = image_landmarker.detect(photo("0-f15-hao-ph.jpg"))
    assert rules.attention_verdict(face_vector(frontal)) is None


def test_each_threshold_of_the_attention_rule(astronaut_face):
    v = face_vector(astronaut_face)
    assert rules.attention_verdict(v) is None

    def edited(**values):
        out = v.copy()
        for name, value in values.items():
            out[I[name]] = value
        return out

    for values in ({"gaze_x": 30.0}, {"gaze_x": -30.0}, {"gaze_y": -25.0}, {"gaze_y": 30.0}, {"yaw": 60.0},
                   {"pitch": -50.0}):
        assert rules.attention_verdict(edited(**values)).state == "distracted", values
    # Attention follows the eyes: a head turned 30 degrees with the gaze back on the screen attends, and the
    # head's tilt in the image plane never counts.
    assert rules.attention_verdict(edited(yaw=30.0, gaze_x=5.0, gaze_y=0.0)) is None
    assert rules.attention_verdict(edited(roll=40.0, gaze_x=0.0, gaze_y=0.0)) is None
    # Eyes shut show no gaze: then the head alone decides.
    assert rules.attention_verdict(edited(yaw=0.0, pitch=0.0, gaze_y=-40.0), eyes_closed=True) is None
    assert rules.attention_verdict(edited(yaw=30.0, gaze_x=0.0), eyes_closed=True).state == "distracted"


def test_quality_rules(astronaut_face, small_face_canvas, image_landmarker):
    v = face_vector(astronaut_face)
    assert rules.quality_verdict(v) is None
    small = image_landmarker.detect(small_face_canvas)
    verdict = rules.quality_verdict(face_vector(small), small.score)
    assert verdict.state == "uncertain" and "too small" in verdict.reason
    assert "faint" in rules.quality_verdict(v, detection_score=0.3).reason
    broken = v.copy()
    broken[I["yaw"]] = np.nan
    assert "not finite" in rules.quality_verdict(broken).reason


def test_engagement_components_explain_the_score(image_landmarker, photo):
    def vec(name):
        return face_vector(image_landmarker.detect(photo(name)))

    frontal = engagement.score(vec("0-f15-hao-ph.jpg"), {"focused": 0.9, "happy": 0.1})
    turned = engagement.score(vec("45-m7-di-ph.jpg"), None)
    assert 0 <= turned.value < frontal.value <= 100
    assert frontal.value > 70 and turned.components["gaze"] < 0.2 < frontal.components["gaze"]
    assert set(frontal.components) == {"presence", "head_pose", "gaze", "eyes", "expression"}
    recomputed = 100 * sum(engagement.WEIGHTS[k] * frontal.components[k] for k in engagement.WEIGHTS)
    assert frontal.value == pytest.approx(recomputed)
    assert engagement.absent().value == 0 and engagement.absent().components["presence"] == 0


@pytest.mark.parametrize("fps", [5, 30])
def test_smoothing_holds_a_steady_state_and_follows_a_real_change(fps):
    smoother = StateSmoother()
    rng = np.random.default_rng(0)
    out = []
    for i in range(10 * fps):
        t = i / fps
        # 20% of frames are misread as "confused" for the first 5 s, then the student really turns away.
        if t < 5:
            raw = "confused" if rng.random() < 0.2 else "focused"
        else:
            raw = "distracted"
        out.append((t, smoother.update(t, raw, 0.8, 80.0)[0]))
    first_half = [s for t, s in out if t < 5]
    assert set(first_half) == {"focused"}
    switched = next(t for t, s in out if s == "distracted")
    assert 5.0 < switched <= 5.0 + 1.0  # evidence over a short window, the same in seconds at 5 or 30 fps
    assert all(s == "distracted" for t, s in out if t >= switched)


def test_smoothing_resets_after_a_gap_and_smooths_engagement():
    smoother = StateSmoother()
    smoother.update(0.0, "focused", 0.9, 100.0)
    state, share, value = smoother.update(0.1, "focused", 0.9, 0.0)
    assert 0 < value < 100
    state, share, value = smoother.update(10.0, "away", 1.0, 0.0)  # long gap: start afresh
    assert state == "away" and value == 0.0 and share == 1.0


def test_baseline_is_a_robust_median():
    rows = [dict.fromkeys(FEATURE_NAMES, 0.0) for _ in range(5)]
    for i, r in enumerate(rows):
        r["yaw"] = 10.0 + i * 0.1
    rows[0]["yaw"] = 80.0  # one outlier frame
    base = Baseline.from_samples(rows)
    assert base.values["yaw"] == pytest.approx(10.3) and base.samples == 5
    off = base.offsets()
    assert off[I["yaw"]] == pytest.approx(10.3) and off[I["ear"]] == 0.0
    with pytest.raises(CalibrationError, match="neutral face"):
        Baseline.from_samples(rows[:2])


def test_calibration_window_is_time_based(astronaut_face):
    v = face_vector(astronaut_face)
    cal = Calibration(seconds=2.0)
    done = [cal.add(10 + i * 0.5, v if i % 2 else None) for i in range(6)]
    assert done == [False, False, False, False, True, True]
    assert cal.baseline().ear == pytest.approx(v[I["ear"]])


def test_degenerate_landmarks_are_uncertain():
    # Every landmark on one point: distances are zero, the head frame is undefined.
    v = face_vector(FaceLandmarks(np.full((478, 3), 0.5), 1, (640, 480), np.zeros(52), np.eye(4)))
    verdict = rules.quality_verdict(v)
    assert verdict.state == "uncertain"
    nan = v.copy()
    nan[:] = np.nan
    assert engagement.score(nan, None).value == pytest.approx(100 * 0.2 * 0.5)  # only the neutral expression
