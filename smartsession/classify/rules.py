"""Explicit rules that override the classifier where geometry is unambiguous: away, drowsy, distracted, uncertain.

Thresholds are named constants, documented in docs/ANALYSIS.md; the order below is the order they are checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smartsession.features.geometry import FEATURE_NAMES

# --- quality: below these the landmarks are not trustworthy enough to call any state -> "uncertain"
#: Face smaller than this share of the frame (sqrt of area ratio): in a 640x480 webcam frame the eyes then
#: span under ~12 pixels and EAR and gaze are noise. (The full-range detector rarely finds faces below ~0.07.)
MIN_FACE_SIZE = 0.10
#: Head turned further than this (degrees): FaceMesh fits half a face and its landmarks drift.
EXTREME_YAW = 65.0
EXTREME_PITCH = 50.0
#: Full-range detector confidence below this (only set when the fallback found the face).
MIN_DETECTION_SCORE = 0.6
#: Classifier's top probability below this: it cannot tell the states apart on this frame.
MIN_MODEL_CONFIDENCE = 0.40

# --- drowsy: eyes shut for a sustained time (a blink lasts 0.1-0.4 s)
#: Eye aspect ratio below which an eye counts as closed (open eyes read ~0.25-0.35).
EAR_CLOSED = 0.16
#: With a calibrated baseline, closed means below this share of the person's own neutral EAR.
EAR_CLOSED_RATIO = 0.6
#: Seconds of continuous closure before "drowsy".
DROWSY_SECONDS = 1.5
#: Lip corners raised beyond this (see ``lip_corner_lift``): a broad smile or a laugh squeezes the eyes
#: nearly shut, which is not drowsiness, so low EAR does not count as closed then.
SMILE_SQUINT_LIFT = 0.15

# --- distracted: head or eyes turned away from the screen (after re-centring on the baseline)
#: Absolute yaw beyond this (degrees): looking at a neighbour, the window, another screen.
DISTRACTED_YAW = 30.0
#: Head pitched down beyond this (degrees): looking at a phone or the desk.
DISTRACTED_PITCH_DOWN = -25.0
#: Head pitched up beyond this (degrees).
DISTRACTED_PITCH_UP = 30.0
#: Iris offset beyond this share of half the eye width: eyes turned hard to the side.
DISTRACTED_GAZE_X = 0.55

_I = {n: i for i, n in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class Verdict:
    """A state decided by a rule, with a confidence and the human-readable reason."""

    state: str
    confidence: float
    reason: str


NO_FACE = Verdict("away", 1.0, "no face in view")


def eyes_closed(ear: float, baseline_ear: float | None = None, lip_corner_lift: float = 0.0) -> bool:
    """Whether the eyes read as shut: EAR below the threshold (relative to the person's neutral EAR when
    known), unless a broad smile explains the narrowing."""
    if lip_corner_lift > SMILE_SQUINT_LIFT:
        return False
    threshold = EAR_CLOSED if baseline_ear is None else EAR_CLOSED_RATIO * baseline_ear
    return bool(ear < threshold)


def quality_verdict(vector, detection_score: float = math.nan) -> Verdict | None:
    """``uncertain`` when the face is too small, too turned or too faintly detected; else None."""
    if not np.isfinite(vector).all():
        return Verdict("uncertain", 0.0, "degenerate landmarks (features not finite)")
    size = vector[_I["face_size"]]
    if size < MIN_FACE_SIZE:
        return Verdict("uncertain", 0.5, f"face too small ({size:.3f} of the frame < {MIN_FACE_SIZE})")
    yaw, pitch = vector[_I["yaw"]], vector[_I["pitch"]]
    if abs(yaw) > EXTREME_YAW or abs(pitch) > EXTREME_PITCH:
        return Verdict("uncertain", 0.5, f"extreme head pose (yaw {yaw:.0f}°, pitch {pitch:.0f}°)")
    if math.isfinite(detection_score) and detection_score < MIN_DETECTION_SCORE:
        return Verdict("uncertain", detection_score, f"faint face (detector score {detection_score:.2f})")
    return None


def attention_verdict(relative) -> Verdict | None:
    """``distracted`` when head or gaze, relative to the person's neutral pose, is turned beyond thresholds."""
    yaw, pitch, gaze_x = relative[_I["yaw"]], relative[_I["pitch"]], relative[_I["gaze_x"]]
    if abs(yaw) > DISTRACTED_YAW:
        return Verdict("distracted", min(1.0, 0.6 + (abs(yaw) - DISTRACTED_YAW) / 50), f"head turned (yaw {yaw:.0f}°)")
    if pitch < DISTRACTED_PITCH_DOWN:
        return Verdict("distracted", min(1.0, 0.6 + (DISTRACTED_PITCH_DOWN - pitch) / 50),
                       f"head down (pitch {pitch:.0f}°)")
    if pitch > DISTRACTED_PITCH_UP:
        return Verdict("distracted", min(1.0, 0.6 + (pitch - DISTRACTED_PITCH_UP) / 50), f"head up (pitch {pitch:.0f}°)")
    if abs(gaze_x) > DISTRACTED_GAZE_X:
        return Verdict("distracted", min(1.0, 0.6 + (abs(gaze_x) - DISTRACTED_GAZE_X)), f"eyes turned aside (gaze {gaze_x:+.2f})")
    return None


class EyeClosure:
    """Times continuous eye closure across frames; ``drowsy`` after :data:`DROWSY_SECONDS`."""

    def __init__(self) -> None:
        self.closed_since: float | None = None

    def reset(self) -> None:
        self.closed_since = None

    def update(self, t: float, closed: bool) -> Verdict | None:
        if not closed:
            self.closed_since = None
            return None
        if self.closed_since is None or t < self.closed_since:
            self.closed_since = t
        duration = t - self.closed_since
        if duration >= DROWSY_SECONDS:
            return Verdict("drowsy", 1.0, f"eyes closed for {duration:.1f} s")
        return None
