"""What the analysis makes of one frame: the face it found, its features, the student's state and score.

One ``Observation`` per frame flows from the ``Analyzer`` to the CLI, the pages and the notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Observation:
    source: str  # file name, "camera" or a stream label
    frame: int  # frame index within the source
    media_time: float  # seconds since the start of the source (a video's position, or since the camera opened)
    wall_time: float  # unix seconds when the frame was captured/decoded
    face: bool
    faces: int
    state: str
    engagement: float  # 0-100
    confidence: float  # 0-1, of the attention call (attending, distracted, drowsy, away)
    engagement_components: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # why this state: which rule fired, or the expression read on an attending face
    # The expression read on this frame's face, whatever its attention (None without a readable face; never an
    # emotion with emotions off), and its probability: beside the state, which tells attention first, so an
    # unclear expression never makes an attending face "uncertain" and a distracted face may still smile.
    expression: str | None = None
    expression_confidence: float = float("nan")
    ms: float = 0.0  # processing time of this frame
    # Normalised (x, y, z) landmarks of the analysed face, for an on-screen overlay only.
    # Never written to disk or sent to the hub.
    landmarks: np.ndarray | None = field(default=None, repr=False)

    def to_record(self) -> dict[str, Any]:
        """A flat record for JSONL/CSV output: everything but the landmarks."""
        rec: dict[str, Any] = {
            "source": self.source,
            "frame": self.frame,
            "media_time": round(self.media_time, 4),
            "face": self.face,
            "faces": self.faces,
            "state": self.state,
            "engagement": round(self.engagement, 2),
            "confidence": round(self.confidence, 4),
            "reason": self.reason,
            "expression": self.expression,
            "expression_confidence": (round(self.expression_confidence, 4)
                                      if np.isfinite(self.expression_confidence) else None),
        }
        rec.update({f"engagement_{k}": round(v, 2) for k, v in self.engagement_components.items()})
        rec.update({k: (None if v is None or not np.isfinite(v) else round(float(v), 5)) for k, v in self.features.items()})
        rec["ms"] = round(self.ms, 3)
        return rec
