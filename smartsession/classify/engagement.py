"""Engagement score 0-100 from documented components, returned with them so a person can see why.

Components (each 0-1) and weights: gaze 0.40, head pose 0.20, eye openness 0.20, expression 0.20; presence
multiplies the sum (no face, no engagement). Gaze carries the most because attention is where the eyes point;
head pose adds a little for facing the screen squarely. See docs/ANALYSIS.md for each curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from smartsession.classify.rules import EAR_CLOSED, EAR_CLOSED_RATIO
from smartsession.features.geometry import FEATURE_NAMES

WEIGHTS = {"head_pose": 0.20, "gaze": 0.40, "eyes": 0.20, "expression": 0.20}
#: Head pose: full credit within these angles (degrees) of facing the screen, none beyond the second; roll
#: (a tilted head) costs nothing.
HEAD_FULL, HEAD_ZERO = 15.0, 45.0
#: Gaze: full credit while it stays within this many degrees of the screen, none beyond the second (a little
#: past the attention rules' ``GAZE_ASIDE``).
GAZE_FULL, GAZE_ZERO = 10.0, 30.0
#: Eyes: none at the "closed" threshold, full credit from this EAR (or share of the neutral EAR) up.
EAR_OPEN, EAR_OPEN_RATIO = 0.24, 0.9
#: Expression: how much each classifier state counts as engaged (probability-weighted).
EXPRESSION_CREDIT = {"focused": 1.0, "happy": 0.85, "confused": 0.6, "distracted": 0.15}

_I = {n: i for i, n in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class EngagementScore:
    value: float  # 0-100
    components: Mapping[str, float] = field(default_factory=dict)  # each 0-1, plus "presence"


def _clip(x: float, lo: float, hi: float) -> float:
    """``np.clip`` for one number (NaN stays NaN), without numpy's per-call cost: this runs on every live frame."""
    return float(min(max(x, lo), hi)) if x == x else math.nan


def _ramp(x: float, full: float, zero: float) -> float:
    """1 up to ``full``, falling linearly to 0 at ``zero``."""
    return _clip((zero - x) / (zero - full), 0.0, 1.0)


def absent() -> EngagementScore:
    return EngagementScore(0.0, {"presence": 0.0, "head_pose": 0.0, "gaze": 0.0, "eyes": 0.0, "expression": 0.0})


def score(relative, probabilities: Mapping[str, float] | None, baseline_ear: float | None = None) -> EngagementScore:
    """Score a visible face from its baseline-relative feature vector and the classifier's probabilities.

    ``probabilities`` may be None when a rule decided without the classifier; expression then counts as neutral
    (0.5), so the geometric components carry the score. Pass the classifier's own probabilities, also when
    emotions are switched off: the expression credit must not jump when the displayed states change.
    """
    yaw, pitch = abs(relative[_I["yaw"]]), abs(relative[_I["pitch"]])
    head = _ramp(max(yaw, pitch), HEAD_FULL, HEAD_ZERO)
    gaze = _ramp(math.hypot(relative[_I["gaze_x"]], relative[_I["gaze_y"]]), GAZE_FULL, GAZE_ZERO)
    ear = relative[_I["ear"]]
    if baseline_ear is None:
        closed, opened = EAR_CLOSED, EAR_OPEN
    else:
        closed, opened = EAR_CLOSED_RATIO * baseline_ear, EAR_OPEN_RATIO * baseline_ear
    eyes = _clip((ear - closed) / max(opened - closed, 1e-6), 0.0, 1.0)
    if probabilities:
        expression = float(sum(EXPRESSION_CREDIT.get(s, 0.5) * p for s, p in probabilities.items()))
    else:
        expression = 0.5
    # A component whose features are not finite (degenerate landmarks) earns nothing rather than poisoning the sum.
    parts = {k: (v if math.isfinite(v) else 0.0) for k, v in
             {"head_pose": head, "gaze": gaze, "eyes": eyes, "expression": expression}.items()}
    value = 100.0 * sum(WEIGHTS[k] * v for k, v in parts.items())
    return EngagementScore(_clip(value, 0.0, 100.0), {"presence": 1.0, **parts})
