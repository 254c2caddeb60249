"""Packed faces: one frame's FaceLandmarker result as a compact binary message, from the browser to the kernel.

In browser analysis mode the page runs the landmarker and sends this instead of a picture; the kernel decodes it
into the same :class:`~smartsession.vision.landmarks.FaceLandmarks` the Python landmarker returns. Pure: no I/O,
no MediaPipe, no OpenCV, so a hostile message costs a bounded parse and nothing else.

Layout (little-endian; ``camera.js`` writes the same):

======  ========  =====================================================================================
offset  type      field
======  ========  =====================================================================================
0       4 bytes   magic ``b"SSF1"`` (format version 1)
4       f64       capture time, unix seconds (browser clock)
12      u16, u16  frame width, height in pixels (what the landmarks are normalised by)
16      u8        faces seen (0: no face; then the message ends here, after the padding below)
17      u8        reserved, 0
18      u16       n: landmarks sent (0 when no face)
20      f32       detection score (NaN: the landmarker gives none)
24      u16 x n   landmark indices (0-477), then 0-2 bytes of padding to a multiple of 4
..      f32 x 3n  landmarks x, y, z (normalised like MediaPipe's: x / width, y / height, z / width)
..      f32 x 52  blendshapes in BLENDSHAPE_NAMES order
..      f32 x 16  facial transformation matrix, row-major (``matrix[row][col]``)
======  ========  =====================================================================================

Only the landmarks the features read are sent (:data:`FEATURE_LANDMARKS`), plus the four that bound the whole
mesh on this frame (leftmost, topmost, rightmost, bottommost), so ``face_size`` comes out exactly as from all 478.
The other rows of the decoded landmark array are NaN.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from smartsession.vision.landmarks import N_BLENDSHAPES, N_LANDMARKS, FaceLandmarks

MAGIC = b"SSF1"
_HEADER = struct.Struct("<4sdHHBBHf")
HEADER_SIZE = _HEADER.size  # 24
#: Largest frame side a message may claim. Only the features' scale depends on it (landmarks are normalised), but a
#: webcam frame is never larger, and a bound keeps hostile sizes out of the arithmetic.
MAX_SIDE = 4096
#: Faces the landmarker may report at most (the browser asks for a few to count them; one is sent).
MAX_FACES = 16

# Keep in step with features/geometry.py: every index it reads. A test checks that the features of a face
# decoded from a message equal those of the full face.
FEATURE_LANDMARKS = tuple(sorted({
    33, 160, 158, 133, 153, 144, 263, 387, 385, 362, 380, 373,  # eyes (corners, lids)
    159, 145, 386, 374,  # mid lids
    468, 473,  # iris centres
    70, 63, 105, 66, 107, 300, 293, 334, 296, 336,  # brows
    61, 291, 13, 14,  # mouth corners, inner lips
    234, 454, 127, 356, 93, 323,  # symmetric pairs for the face's horizontal axis
    10, 151, 2, 94,  # forehead and nose base ("up")
}))
#: Landmarks a message may carry at most: the whole mesh (the browser sends the feature ones plus four).
MAX_LANDMARKS = N_LANDMARKS


#: Packed faces one batch message may carry at most: a second of capture at the camera's highest rate.
MAX_BATCH = 30
#: A batch as one binary message (serve's face pipe, ``serve/pipe.py``): u32 batch number, u32 header length, the
#: header (UTF-8 JSON: ``{"t": newest capture time, "sizes": [bytes of each face], "stats": the page's counters,
#: now and then}``), then the packed faces in capture order. ``camera.js`` writes the same.
BATCH_PREFIX = struct.Struct("<II")
MAX_BATCH_HEADER = 16384


class PackedFaceError(ValueError):
    """Bytes that are not a packed face message; the message is dropped, analysis goes on."""


@dataclass(frozen=True)
class PackedFace:
    """A decoded message: the capture time and the face, ready for the Analyzer."""

    t: float
    face: FaceLandmarks


def _padding(n: int) -> int:
    return (4 - (HEADER_SIZE + 2 * n) % 4) % 4


def message_size(n: int) -> int:
    """Bytes of a message carrying ``n`` landmarks (``n == 0``: no face)."""
    if n == 0:
        return HEADER_SIZE
    return HEADER_SIZE + 2 * n + _padding(n) + 4 * (3 * n + N_BLENDSHAPES + 16)


#: The largest batch message: a full header and MAX_BATCH faces of the whole mesh.
MAX_BATCH_MESSAGE = BATCH_PREFIX.size + MAX_BATCH_HEADER + MAX_BATCH * message_size(MAX_LANDMARKS)


def batch_number(data: bytes | bytearray | memoryview) -> int | None:
    """A batch message's number (what its ack names), or None when it is too short to hold one."""
    return BATCH_PREFIX.unpack_from(data)[0] if len(data) >= BATCH_PREFIX.size else None


def split_batch(data: bytes | bytearray | memoryview) -> tuple[int, dict, list[bytes]]:
    """A batch message's number, header and each face's bytes (not decoded yet), or :class:`PackedFaceError`."""
    buf = memoryview(data).cast("B")
    if len(buf) > MAX_BATCH_MESSAGE:
        raise PackedFaceError(f"a batch message of {len(buf)} bytes (at most {MAX_BATCH_MESSAGE})")
    if len(buf) < BATCH_PREFIX.size:
        raise PackedFaceError("a batch message starts with its number and its header's length")
    seq, length = BATCH_PREFIX.unpack_from(buf)
    end = BATCH_PREFIX.size + length
    if length > MAX_BATCH_HEADER or end > len(buf):
        raise PackedFaceError(f"a batch header of {length} bytes does not fit the message")
    try:
        header = json.loads(bytes(buf[BATCH_PREFIX.size:end]))
    except ValueError as err:
        raise PackedFaceError(f"a batch header is not JSON: {err}") from None
    sizes = header.get("sizes") if isinstance(header, dict) else None
    if (not isinstance(sizes, list) or not 1 <= len(sizes) <= MAX_BATCH
            or not all(s.__class__ is int and HEADER_SIZE <= s <= message_size(MAX_LANDMARKS) for s in sizes)):
        raise PackedFaceError(f"a batch header names 1-{MAX_BATCH} faces by their sizes in bytes")
    if end + sum(sizes) != len(buf):
        raise PackedFaceError(f"a batch's faces take {len(buf) - end} bytes, its header says {sum(sizes)}")
    faces = []
    for size in sizes:
        faces.append(bytes(buf[end:end + size]))
        end += size
    return seq, header, faces


def extreme_landmarks(landmarks: np.ndarray) -> tuple[int, ...]:
    """Indices of the landmarks at the mesh's min x, min y, max x, max y (what bounds the face); NaN rows (a face
    decoded from a message) are skipped, so a decoded face packs into the same message again."""
    lm = np.asarray(landmarks)
    return (int(np.nanargmin(lm[:, 0])), int(np.nanargmin(lm[:, 1])), int(np.nanargmax(lm[:, 0])),
            int(np.nanargmax(lm[:, 1])))


def encode(t: float, width: int, height: int, faces: int, landmarks: np.ndarray | None = None,
           indices=None, blendshapes=None, matrix=None, score: float = math.nan) -> bytes:
    """One frame as a message. ``landmarks`` is either the full (478, 3) mesh (``indices=None``: the feature
    landmarks and the four extremes are picked from it) or the rows at ``indices``; None means no face."""
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"frame size must be 1-{MAX_SIDE} pixels a side, got {width}x{height}")
    if landmarks is None:  # no face to send: 0 faces, whatever was counted (the layout has no count without one)
        return _HEADER.pack(MAGIC, float(t), width, height, 0, 0, 0, math.nan)
    lm = np.asarray(landmarks, dtype=np.float64)
    if indices is None:
        if lm.shape != (N_LANDMARKS, 3):
            raise ValueError(f"landmarks must be the full ({N_LANDMARKS}, 3) mesh when no indices are given, "
                             f"got shape {lm.shape}")
        indices = sorted(set(FEATURE_LANDMARKS) | set(extreme_landmarks(lm)))
        lm = lm[indices]
    idx = np.asarray(indices, dtype="<u2")
    if lm.shape != (len(idx), 3):
        raise ValueError(f"landmarks must have one (x, y, z) row per index, got shape {lm.shape} for {len(idx)}")
    shapes = np.asarray(blendshapes, dtype="<f4").reshape(N_BLENDSHAPES)
    mat = np.asarray(matrix, dtype="<f4").reshape(16)
    n = len(idx)
    return b"".join([
        _HEADER.pack(MAGIC, float(t), width, height, max(1, min(int(faces), MAX_FACES)), 0, n, float(score)),
        idx.tobytes(), bytes(_padding(n)), lm.astype("<f4").tobytes(), shapes.tobytes(), mat.tobytes(),
    ])


def encode_face(face: FaceLandmarks, t: float) -> bytes:
    """The message the browser would send for this Python landmarker result (for replays and benchmarks)."""
    w, h = face.image_size
    if not face.face:
        return encode(t, w, h, face.faces)
    return encode(t, w, h, face.faces, face.landmarks, blendshapes=face.blendshapes, matrix=face.matrix,
                  score=face.score)


def decode(data: bytes | bytearray | memoryview) -> PackedFace:
    """The face in a message, or :class:`PackedFaceError` with what is wrong (checked before any array is built)."""
    buf = memoryview(data).cast("B")
    if len(buf) < HEADER_SIZE:
        raise PackedFaceError(f"packed face of {len(buf)} bytes is shorter than its {HEADER_SIZE}-byte header")
    magic, t, width, height, faces, _reserved, n, score = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise PackedFaceError(f"not a packed face message (starts with {bytes(magic)!r}, expected {MAGIC!r}); "
                              "reload the page so the browser runs the matching camera code")
    if not math.isfinite(t):
        raise PackedFaceError("packed face has no valid capture time")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise PackedFaceError(f"packed face claims a {width}x{height} frame (1-{MAX_SIDE} pixels a side)")
    if faces > MAX_FACES or (n == 0) != (faces == 0) or n > MAX_LANDMARKS:
        raise PackedFaceError(f"packed face with {faces} faces and {n} landmarks is inconsistent")
    if len(buf) != message_size(n):
        raise PackedFaceError(f"packed face of {len(buf)} bytes; {n} landmarks make {message_size(n)}")
    if n == 0:
        return PackedFace(t, FaceLandmarks(None, 0, (width, height)))
    at = HEADER_SIZE
    idx = np.frombuffer(buf, "<u2", n, at).astype(np.intp)
    at += 2 * n + _padding(n)
    points = np.frombuffer(buf, "<f4", 3 * n, at).reshape(n, 3)
    at += 12 * n
    shapes = np.frombuffer(buf, "<f4", N_BLENDSHAPES, at)
    at += 4 * N_BLENDSHAPES
    matrix = np.frombuffer(buf, "<f4", 16, at).reshape(4, 4)
    if idx.max() >= N_LANDMARKS or len(np.unique(idx)) != n:
        raise PackedFaceError(f"packed face landmark indices must be distinct and below {N_LANDMARKS}")
    missing = set(FEATURE_LANDMARKS).difference(idx.tolist())
    if missing:
        raise PackedFaceError(f"packed face lacks landmarks the features need: {sorted(missing)[:8]}")
    if not (np.isfinite(points).all() and np.isfinite(shapes).all() and np.isfinite(matrix).all()):
        raise PackedFaceError("packed face holds non-finite numbers")
    landmarks = np.full((N_LANDMARKS, 3), np.nan)
    landmarks[idx] = points
    face = FaceLandmarks(landmarks, int(faces), (width, height), blendshapes=shapes.astype(np.float64),
                         matrix=matrix.astype(np.float64), score=float(score), via="browser")
    return PackedFace(t, face)
