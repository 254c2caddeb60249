"""Explicit rules that decide attention before the expression is read: away, drowsy, distracted, uncertain, attending.

Thresholds are named constants, documented in docs/ANALYSIS.md; the order below is the order they are checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smartsession.features.geometry import FEATURE_NAMES

# --- quality: below these the landmarks are not trustworthy enough to call any state -> "uncertain". Only the
# face itself can make a state uncertain: an unclear expression on an attending face leaves it attending.
#: Face smaller than this share of the frame (sqrt of area ratio): in a 640x480 webcam frame the eyes then
#: span under ~12 pixels and eye openness and gaze are noise.
MIN_FACE_SIZE = 0.10
#: Share of the face inside the frame below this: half the face is out of the picture, and the landmarks of the
#: missing half are MediaPipe's guesses.
MIN_IN_FRAME = 0.6
#: Detector confidence below this (only set when the small-face search found the face).
MIN_DETECTION_SCORE = 0.6
#: Expression reader's top probability below this: it cannot tell the expressions apart on this frame, so an
#: attending face reads ``focused`` (attending, no expression claimed) with that probability reported beside it.
MIN_EXPRESSION_CONFIDENCE = 0.40

# --- drowsy: eyes shut for a sustained time (a blink lasts 0.1-0.4 s)
#: Eye aspect ratio below which an eye counts as closed (open eyes read ~0.25-0.35). Eyes lowered to a desk or
#: a phone narrow too, to ~0.10-0.12 as the lids follow the gaze, while shut lids leave ~0.05: the threshold
#: sits between, so looking down is read as gaze (distracted), not as closing eyes (drowsy).
EAR_CLOSED = 0.09
#: With a calibrated baseline, closed means below this share of the person's own neutral EAR.
EAR_CLOSED_RATIO = 0.4
#: Seconds of continuous closure before "drowsy".
DROWSY_SECONDS = 1.5
#: Lip corners raised beyond this (see ``lip_corner_lift``): a broad smile or a laugh squeezes the eyes
#: nearly shut, which is not drowsiness, so low EAR does not count as closed then.
SMILE_SQUINT_LIFT = 0.15

# --- distracted: the gaze (head pose plus the eyes' rotation in the head, after re-centring on the person's
# baseline) points away from the screen. Roll, the head's tilt in the image plane, moves neither.
#: Gaze further aside than this (degrees): a neighbour, the window, another screen. A laptop screen at arm's
#: length spans about +-15 degrees; 25 leaves room for its edges and for the eyes' estimate.
GAZE_ASIDE = 25.0
#: Gaze lower than this (degrees): the desk, notes or a phone in the lap lie 30-60 degrees below the camera, a
#: laptop screen's lower edge about 15-20 degrees below it.
GAZE_DOWN = -20.0
#: Gaze higher than this (degrees): the ceiling, a board above the screen.
GAZE_UP = 25.0
#: Head turned further than this (degrees): the eyes turn about 30 degrees at most, so no eye movement brings
#: the gaze back within ``GAZE_ASIDE`` of the screen, whatever the eye estimate says (it is poor on a profile).
HEAD_AWAY_YAW = GAZE_ASIDE + 30.0
HEAD_AWAY_PITCH = 45.0

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
    """``uncertain`` when the face is too small, too faintly detected or half out of the frame to read; else None."""
    if not np.isfinite(vector).all():
        return Verdict("uncertain", 0.0, "degenerate landmarks (features not finite)")
    size = vector[_I["face_size"]]
    if size < MIN_FACE_SIZE:
        return Verdict("uncertain", 0.5, f"face too small ({size:.3f} of the frame < {MIN_FACE_SIZE})")
    in_frame = vector[_I["in_frame"]]
    if in_frame < MIN_IN_FRAME:
        return Verdict("uncertain", 0.5, f"face half out of the frame ({in_frame:.0%} of it inside)")
    if math.isfinite(detection_score) and detection_score < MIN_DETECTION_SCORE:
        return Verdict("uncertain", detection_score, f"faint face (detector score {detection_score:.2f})")
    return None


def _beyond(value: float, limit: float) -> float:
    """Confidence of a rule that fired: 0.6 at its threshold, rising to 1 some 20 degrees past it."""
    return min(1.0, 0.6 + abs(value - limit) / 50)


def attention_verdict(relative, eyes_closed: bool = False) -> Verdict | None:
    """``distracted`` when the gaze, relative to the person's neutral gaze, points away from the screen.

    Shut eyes show no gaze (their eyeLook* blendshapes are guesses), so then the head alone counts.
    """
    yaw, pitch = relative[_I["yaw"]], relative[_I["pitch"]]
    if abs(yaw) > HEAD_AWAY_YAW:
        return Verdict("distracted", _beyond(abs(yaw), HEAD_AWAY_YAW), f"head turned away (yaw {yaw:+.0f}°)")
    if abs(pitch) > HEAD_AWAY_PITCH:
        return Verdict("distracted", _beyond(abs(pitch), HEAD_AWAY_PITCH), f"head turned away (pitch {pitch:+.0f}°)")
    gx, gy = (yaw, pitch) if eyes_closed else (relative[_I["gaze_x"]], relative[_I["gaze_y"]])
    what = "head" if eyes_closed else "gaze"
    if abs(gx) > GAZE_ASIDE:
        return Verdict("distracted", _beyond(abs(gx), GAZE_ASIDE), f"looking aside ({what} {gx:+.0f}°)")
    if gy < GAZE_DOWN:
        return Verdict("distracted", _beyond(gy, GAZE_DOWN), f"looking down ({what} {gy:+.0f}°: desk, notes or phone)")
    if gy > GAZE_UP:
        return Verdict("distracted", _beyond(gy, GAZE_UP), f"looking up ({what} {gy:+.0f}°)")
    return None


def attending_confidence(relative) -> float:
    """How sure an attending verdict is: 0.6 on the nearest gaze threshold, rising to 1 some 20 degrees inside."""
    gx, gy = relative[_I["gaze_x"]], relative[_I["gaze_y"]]
    margin = min(GAZE_ASIDE - abs(gx), gy - GAZE_DOWN, GAZE_UP - gy)
    return float(min(1.0, 0.6 + max(margin, 0.0) / 50)) if math.isfinite(margin) else 0.6


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
