"""The plain attention rule the analyser is scored beside: head pose plus eyeLook blendshapes, fixed thresholds.

No calibration, no smile correction, no quality checks, no classifier: the simplest honest reading of
FaceLandmarker's output, kept so every evaluation shows what the analyser adds (or loses) over it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from smartsession.features.geometry import eye_rotation
from smartsession.vision.landmarks import BLENDSHAPE_NAMES

#: Degrees of gaze (head yaw/pitch plus 30 degrees per unit of eyeLook difference) beyond which the rule says
#: "not at the screen": aside, down, up.
ASIDE, DOWN, UP = 25.0, 20.0, 25.0


def gaze(features: Mapping[str, float]) -> tuple[float, float]:
    """Gaze in degrees (towards the image's right, up) from a face's ``yaw``, ``pitch`` and raw eyeLook* blendshapes."""
    eyes = eye_rotation(np.array([[features[n] for n in BLENDSHAPE_NAMES]], dtype=np.float64))[0]
    return float(features["yaw"] + eyes[0]), float(features["pitch"] + eyes[1])


def attention_of(features: Mapping[str, float]) -> str:
    """``attending`` or ``distracted`` (gaze beyond a threshold) for a visible face's named features."""
    gx, gy = gaze(features)
    return "distracted" if abs(gx) > ASIDE or gy < -DOWN or gy > UP else "attending"
