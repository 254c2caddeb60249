"""Features: named features of a face from FaceLandmarker's output (landmarks, blendshapes, pose matrix).

Third arrow of the pipeline: one face -> one row of numbers; the table below documents each one.

Conventions (image coordinates, the camera's view, not mirrored):

* Distances are measured in 3-D (x and z scaled by the image width, y by its height, as MediaPipe defines
  z) and divided by the inter-ocular distance (between the two eye centres), so they do not change with the
  face's size in the frame or its distance from the camera.
* "Up", "right" and "forward" belong to the face: the landmarks are first rotated into the face's own frame
  (x towards the image's right on a frontal face, y up the face, z out of the face towards the camera), so
  a tilted head does not change how raised a brow or a lip corner looks.
* ``left``/``right`` in a name are the person's own: ``ear_left`` is their left eye, which a camera sees
  on the right of the image. Blendshapes keep MediaPipe's (ARKit) names, where "Left" is the person's left too.
* Angles are in degrees. ``yaw`` > 0: the face turns towards the image's right (the person's left).
  ``pitch`` > 0: the face tilts up. ``roll`` > 0: the face rotates clockwise in the image.

=================  ==========================================================================================
feature            meaning
=================  ==========================================================================================
ear_left/right     eye aspect ratio, (two lid-to-lid heights) / (2 x eye width); ~0.25-0.35 open, < 0.15 shut
ear                mean of the two
mar                mouth aspect ratio: inner-lip opening / mouth width; ~0 closed, > 0.5 wide open (yawn)
mouth_width        corner-to-corner mouth width / inter-ocular distance; grows with a smile
lip_corner_lift    height of the lip corners above the middle of the lips / inter-ocular distance; > 0 smile
brow_eye_left/...  height of the brow (mean of its upper points) above the eye centre / inter-ocular distance
brow_eye           mean of the two; rises in surprise, falls when frowning
brow_furrow        gap between the inner brow ends / inter-ocular distance; shrinks when the brows knit
iris_x             iris offset from the eye centre along the eye, / half the eye width, mean of both eyes;
                   about -1..1, > 0 towards the image's right
iris_y             iris offset from the middle of the lids, / half the eye width; > 0 up
upper_lid          height of the upper lid's middle above the line between the eye corners / half the eye width,
                   mean of both eyes; ~0.25-0.5 with the eyes on the screen (smiling too), near 0 when the lids
                   follow the eyes down to a desk or close
face_size          sqrt(area of the landmarks' bounding box / area of the frame): ~0.35 at a laptop, < 0.1 tiny
in_frame           share of that bounding box inside the frame: 1 for a whole face, ~0.5 for a face half out of it
yaw, pitch, roll   head pose from FaceLandmarker's facial transformation matrix (its rotation part)
eye_x, eye_y       the eyes' own rotation in the head, from the eyeLook* blendshapes: ``EYE_RANGE`` degrees
                   times (look towards the image's right - look left), and (look up - look down), both eyes;
                   "look down" without the part a smile adds while the upper lid stays up (see ``eye_rotation``)
gaze_x, gaze_y     where the eyes point: head pose plus the eyes' rotation (yaw + eye_x, pitch + eye_y);
                   0, 0 is straight into the camera. Eyes counter-rotate against the head, so a turned head
                   with the eyes back on the screen reads near 0 here, and eyes lowered to a desk read down
<blendshape>       the 52 blendshapes (0-1) by their MediaPipe names, e.g. ``mouthSmileLeft``, ``browDownRight``
=================  ==========================================================================================
"""

from __future__ import annotations

import numpy as np

from smartsession.vision.landmarks import BLENDSHAPE_NAMES, head_pose

#: Features computed from the landmarks' geometry.
GEOMETRY_NAMES = (
    "ear_left", "ear_right", "ear", "mar", "mouth_width", "lip_corner_lift",
    "brow_eye_left", "brow_eye_right", "brow_eye", "brow_furrow", "iris_x", "iris_y", "upper_lid", "face_size",
    "in_frame",
)
#: Head pose, the eyes' rotation in the head and the gaze direction they add up to (degrees).
POSE_NAMES = ("yaw", "pitch", "roll", "eye_x", "eye_y", "gaze_x", "gaze_y")
FEATURE_NAMES = GEOMETRY_NAMES + POSE_NAMES + BLENDSHAPE_NAMES

#: Degrees of eye rotation for a full eyeLook* blendshape: the eyes turn about 30 degrees before the head
#: follows, and ARKit-style blendshapes reach 1 near that extreme.
EYE_RANGE = 30.0
#: eyeLookDown a full smile adds with the eyes still on the screen: smiling squeezes the lower lids up, and the
#: blendshape model reads the narrowed eye as lowered (``eyeLookDown`` about 0.5 at ``mouthSmile`` 0.9).
SMILE_LOOK_DOWN = 0.55
#: ``upper_lid`` (both eyes' mean: the eyes and their lids move together) at and below which the upper lids have
#: followed the eyes down (or shut), so the eyeLookDown reading is the eyes' own and nothing is taken off for a
#: smile; from ``LID_UP`` on, the smile's whole share is. Eyes on the screen keep the upper lid at 0.14-0.5 of
#: the half eye width, smiling or not; eyes lowered to a desk bring it to about 0-0.03 (notebooks/02).
LID_DOWN, LID_UP = 0.06, 0.14

# FaceMesh indices. "R" = the person's right eye/brow (image left), "L" = their left (image right).
_EYE_R = (33, 160, 158, 133, 153, 144)  # outer corner, upper lid x2, inner corner, lower lid x2
_EYE_L = (263, 387, 385, 362, 380, 373)
_LID_R = (159, 145)  # mid upper lid, mid lower lid
_LID_L = (386, 374)
_IRIS_R, _IRIS_L = 468, 473  # iris centres (refine_landmarks=True)
_BROW_R = (70, 63, 105, 66, 107)  # upper brow, outer to inner
_BROW_L = (300, 293, 334, 296, 336)
_INNER_BROW_R, _INNER_BROW_L = 107, 336
_MOUTH_CORNERS = (61, 291)
_LIPS_INNER = (13, 14)  # inner upper lip, inner lower lip
# Rigid, left-right symmetric pairs (image left, image right) that define the face's horizontal axis.
_PAIRS = np.array([(33, 263), (133, 362), (234, 454), (127, 356), (93, 323), (70, 300)])
# Forehead and nose base define "up"; both are rigid (unlike the chin, which drops when the mouth opens).
_TOP, _BOTTOM = (10, 151), (2, 94)
_B = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}


# Small-array arithmetic below avoids np.linalg.norm/np.cross/np.mean: their per-call overhead dominates
# on one face, and this runs on every live frame.
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt((v * v).sum(axis=-1, keepdims=True)), 1e-12)


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return np.sqrt((d * d).sum(axis=-1))


def _ear(p: np.ndarray, eye: tuple[int, ...]) -> np.ndarray:
    p1, p2, p3, p4, p5, p6 = (p[:, i] for i in eye)
    return (_dist(p2, p6) + _dist(p3, p5)) / np.maximum(2.0 * _dist(p1, p4), 1e-12)


def smile_free_look_down(look_down: np.ndarray, smile: np.ndarray, upper_lid: np.ndarray) -> np.ndarray:
    """One eye's ``eyeLookDown`` without what a smile on its side adds, unless the upper lids say the eyes are lowered.

    The lower lid rises in a smile and the upper lid stays; an eye lowered to a desk takes its upper lid down
    with it (the lid follows the eye). So the smile's share (``SMILE_LOOK_DOWN`` x ``mouthSmile``) comes off
    only as far as the upper lid is up, between ``LID_DOWN`` (nothing) and ``LID_UP`` (all of it).
    """
    lid_up = np.clip((upper_lid - LID_DOWN) / (LID_UP - LID_DOWN), 0.0, 1.0)
    return np.maximum(look_down - SMILE_LOOK_DOWN * smile * lid_up, 0.0)


def eye_rotation(blendshapes: np.ndarray, upper_lid: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) the eyes' rotation in the head, degrees: towards the image's right, and up; mean of both eyes.

    ``upper_lid`` (n,), the feature of that name, enables the smile correction of :func:`smile_free_look_down`;
    without it the eyeLookDown blendshapes count as they are.
    """
    b = np.asarray(blendshapes, dtype=np.float64)
    # The person's left eye looks out (and their right eye in) towards their left, the image's right.
    right = (b[:, _B["eyeLookOutLeft"]] - b[:, _B["eyeLookInLeft"]]
             + b[:, _B["eyeLookInRight"]] - b[:, _B["eyeLookOutRight"]]) / 2
    down_l, down_r = b[:, _B["eyeLookDownLeft"]], b[:, _B["eyeLookDownRight"]]
    if upper_lid is not None:
        down_r = smile_free_look_down(down_r, b[:, _B["mouthSmileRight"]], upper_lid)
        down_l = smile_free_look_down(down_l, b[:, _B["mouthSmileLeft"]], upper_lid)
    up = (b[:, _B["eyeLookUpLeft"]] + b[:, _B["eyeLookUpRight"]] - down_l - down_r) / 2
    return EYE_RANGE * np.stack([right, up], axis=1)


def compute(landmarks: np.ndarray, image_size: np.ndarray, blendshapes: np.ndarray,
            matrices: np.ndarray) -> np.ndarray:
    """Feature matrix (n, len(FEATURE_NAMES)) from one face per row: normalised landmarks (n, 478, 3), frame sizes
    (n, 2) = (w, h), blendshapes (n, 52) and facial transformation matrices (n, 4, 4)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    size = np.asarray(image_size, dtype=np.float64)
    w, h = size[:, 0], size[:, 1]
    p = lm * size[:, [0, 1, 0]][:, None, :]  # isotropic pixel units: MediaPipe scales z like x

    eye_r = (p[:, 33] + p[:, 133]) / 2
    eye_l = (p[:, 263] + p[:, 362]) / 2
    iod = np.maximum(_dist(eye_r, eye_l), 1e-9)
    origin = (eye_r + eye_l) / 2

    # Camera frame is x right, y down, z away from the camera. Face frame is x right, y up, z towards the camera.
    x_axis = _unit((p[:, _PAIRS[:, 1]] - p[:, _PAIRS[:, 0]]).sum(axis=1))
    down = p[:, list(_BOTTOM)].sum(axis=1) - p[:, list(_TOP)].sum(axis=1)
    y_axis = _unit(-down - (-down * x_axis).sum(axis=1, keepdims=True) * x_axis)  # up the face
    # x (right) cross y (up, i.e. -image y) gives the direction out of the face, towards the camera (-z).
    x0, x1, x2 = x_axis[:, 0], x_axis[:, 1], x_axis[:, 2]
    y0, y1, y2 = y_axis[:, 0], y_axis[:, 1], y_axis[:, 2]
    z_axis = np.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], axis=1)
    rot = np.stack([x_axis, y_axis, z_axis], axis=2)  # columns: face axes in camera coordinates
    # Face coordinates in units of inter-ocular distance: x right, y up, z towards the camera.
    a = np.matmul(p - origin[:, None, :], rot) / iod[:, None, None]

    ear_r, ear_l = _ear(p, _EYE_R), _ear(p, _EYE_L)
    c0, c1 = _MOUTH_CORNERS
    mouth_w = _dist(p[:, c0], p[:, c1])
    mar = _dist(p[:, _LIPS_INNER[0]], p[:, _LIPS_INNER[1]]) / np.maximum(mouth_w, 1e-9)
    lip_mid_y = (a[:, _LIPS_INNER[0], 1] + a[:, _LIPS_INNER[1], 1]) / 2
    lip_lift = (a[:, c0, 1] + a[:, c1, 1]) / 2 - lip_mid_y

    eye_r_a = (a[:, 33] + a[:, 133]) / 2
    eye_l_a = (a[:, 263] + a[:, 362]) / 2
    brow_r = a[:, list(_BROW_R), 1].sum(axis=1) / len(_BROW_R) - eye_r_a[:, 1]
    brow_l = a[:, list(_BROW_L), 1].sum(axis=1) / len(_BROW_L) - eye_l_a[:, 1]
    furrow = _dist(a[:, _INNER_BROW_R, :2], a[:, _INNER_BROW_L, :2])

    def _gaze(iris: int, corner_a: int, corner_b: int, lids: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        half = np.maximum(np.abs(a[:, corner_b, 0] - a[:, corner_a, 0]) / 2, 1e-9)
        cx = (a[:, corner_a, 0] + a[:, corner_b, 0]) / 2
        cy = (a[:, lids[0], 1] + a[:, lids[1], 1]) / 2
        return (a[:, iris, 0] - cx) / half, (a[:, iris, 1] - cy) / half

    gx_r, gy_r = _gaze(_IRIS_R, 33, 133, _LID_R)
    gx_l, gy_l = _gaze(_IRIS_L, 362, 263, _LID_L)

    def _upper_lid(corner_a: int, corner_b: int, upper: int) -> np.ndarray:
        half = np.maximum(np.abs(a[:, corner_b, 0] - a[:, corner_a, 0]) / 2, 1e-9)
        return (a[:, upper, 1] - (a[:, corner_a, 1] + a[:, corner_b, 1]) / 2) / half

    upper_lid = (_upper_lid(33, 133, _LID_R[0]) + _upper_lid(362, 263, _LID_L[0])) / 2

    # NaN-ignoring: a face from the browser carries only the landmarks read here plus the four that bound it.
    lo, hi = np.fmin.reduce(p[:, :, :2], axis=1), np.fmax.reduce(p[:, :, :2], axis=1)
    span = (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1])
    face_size = np.sqrt(span / (w * h))
    inside = (np.clip(hi[:, 0], 0, w) - np.clip(lo[:, 0], 0, w)) * (np.clip(hi[:, 1], 0, h) - np.clip(lo[:, 1], 0, h))
    in_frame = inside / np.maximum(span, 1e-12)

    pose = head_pose(matrices)
    eyes = eye_rotation(blendshapes, upper_lid)
    geometry = np.stack([
        ear_l, ear_r, (ear_l + ear_r) / 2, mar, mouth_w / iod, lip_lift,
        brow_l, brow_r, (brow_l + brow_r) / 2, furrow, (gx_l + gx_r) / 2, (gy_l + gy_r) / 2,
        upper_lid, face_size, in_frame,
    ], axis=1)
    return np.concatenate([geometry, pose, eyes, pose[:, :2] + eyes, np.asarray(blendshapes, np.float64)], axis=1)
