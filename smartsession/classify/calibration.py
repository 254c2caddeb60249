"""Per-student baseline: the person's own neutral face, from the first seconds of a stream or a neutral sample.

Faces differ (resting eye openness, a webcam mounted off to the side); rules and the model read features
relative to this baseline instead of a population average.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from smartsession.features.geometry import FEATURE_NAMES

#: Pose and gaze are re-centred on the baseline: the camera usually sits above the screen, so a student who
#: looks at the screen looks slightly down and aside of it; after re-centring that gaze reads 0, which is what
#: the attention rules' thresholds mean. Expression features (blendshapes, lip corners, brows) are not shifted:
#: the classifier was trained on their raw values across many faces, and a calibration window may hold a smile.
RECENTRED = ("yaw", "pitch", "roll", "eye_x", "eye_y", "gaze_x", "gaze_y", "iris_x", "iris_y")
#: Fewest usable face frames for a baseline; fewer gives :class:`CalibrationError`.
MIN_SAMPLES = 3


class CalibrationError(ValueError):
    """Not enough face frames to calibrate; ``str(err)`` says what to do."""


@dataclass(frozen=True)
class Baseline:
    """Robust (median) neutral values of every feature for one person."""

    values: Mapping[str, float]
    samples: int

    @classmethod
    def from_samples(cls, samples: Iterable[Mapping[str, float] | np.ndarray]) -> "Baseline":
        """Median of feature dicts or of feature vectors ordered like ``FEATURE_NAMES``; NaN rows are skipped."""
        rows = []
        for s in samples:
            row = np.asarray([s.get(n, math.nan) for n in FEATURE_NAMES] if isinstance(s, Mapping) else s, float)
            if np.isfinite(row[FEATURE_NAMES.index("yaw")]):
                rows.append(row)
        if len(rows) < MIN_SAMPLES:
            raise CalibrationError(
                f"calibration needs at least {MIN_SAMPLES} frames with a visible face, got {len(rows)}: "
                "look at the screen with a neutral face, in good light, and try again"
            )
        med = np.nanmedian(np.stack(rows), axis=0)
        return cls(dict(zip(FEATURE_NAMES, med.tolist())), len(rows))

    def offsets(self) -> np.ndarray:
        """Vector to subtract from a feature vector: the neutral value for re-centred features, else 0 (read-only;
        built once, since every live frame subtracts it)."""
        return self._offsets

    @functools.cached_property
    def _offsets(self) -> np.ndarray:
        out = np.array([self.values[n] if n in RECENTRED else 0.0 for n in FEATURE_NAMES])
        out.flags.writeable = False
        return out

    @property
    def ear(self) -> float:
        return float(self.values["ear"])


@dataclass
class Calibration:
    """Collects feature vectors for ``seconds`` of media time, then yields a :class:`Baseline`."""

    seconds: float
    start: float | None = None
    rows: list[np.ndarray] = field(default_factory=list)

    def add(self, t: float, vector: np.ndarray | None) -> bool:
        """Add one frame (``None`` when no face); return True once the window has elapsed."""
        if self.start is None:
            self.start = t
        if vector is not None:
            self.rows.append(vector)
        return t - self.start >= self.seconds

    def baseline(self) -> Baseline:
        return Baseline.from_samples(self.rows)
