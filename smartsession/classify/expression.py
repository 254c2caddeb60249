"""The transparent expression rule: a smile is happy, lowered brows without a smile are confused, else focused.

A scikit-learn classifier with fixed, documented thresholds (``fit`` learns nothing but the classes), so it is
cross-validated, compared and exported exactly like the learned candidates in notebooks/03 and 04.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

#: Mean ``mouthSmile*`` from which a face reads happy. Smiles with the teeth showing read 0.75-0.97, a faint
#: polite smile about 0.4, a tongue stuck out about 0.3 (it pushes the lips, not the lip corners, up).
SMILE = 0.5
#: Mean ``browDown*`` from which a face without a smile reads confused (knitted, lowered brows): a neutral face
#: reads under 0.05, posed anger 0.4, posed disgust 0.17.
BROW_DOWN = 0.15
#: Lip corners pulled sideways (``mouthStretch*``) more than this share of the smile make a grimace, not a smile.
#: The jaw is no cue: a broad laugh opens it past 0.5, and speaking, a yawn or a gasp open it without raising the
#: lip corners, which the smile threshold already requires.
STRETCH_SHARE = 0.5
#: Softness of the probabilities around each threshold (a logistic's scale, in units of the blendshape).
SOFTNESS = {"smile": 0.06, "brow": 0.03, "stretch": 0.05}

#: The blendshapes the rule reads.
CUES = ("mouthSmileLeft", "mouthSmileRight", "browDownLeft", "browDownRight", "mouthStretchLeft",
        "mouthStretchRight")
CLASSES = ("confused", "focused", "happy")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


class ExpressionRule(ClassifierMixin, BaseEstimator):
    """focused / happy / confused from a few blendshapes; rows are features in ``feature_names`` order.

    ``predict_proba`` softens each threshold with a logistic (``SOFTNESS``), so a face on a threshold reads 0.5
    and the probabilities say how clear the cue is: happy = smile x not a grimace; confused =
    (not happy) x lowered brows; focused = the rest.
    """

    def __init__(self, feature_names: Sequence[str] = CUES, smile: float = SMILE, brow_down: float = BROW_DOWN,
                 stretch_share: float = STRETCH_SHARE):
        self.feature_names = feature_names
        self.smile = smile
        self.brow_down = brow_down
        self.stretch_share = stretch_share

    def _columns(self) -> dict[str, int]:
        names = list(self.feature_names)
        missing = [c for c in CUES if c not in names]
        if missing:
            raise ValueError(f"the expression rule reads {missing}, which feature_names lacks")
        return {c: names.index(c) for c in CUES}

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got shape {X.shape}")
        self.columns_ = self._columns()
        self.classes_ = np.asarray(CLASSES, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def cues(self, X) -> dict[str, np.ndarray]:
        """The rule's cues per row: mean smile, mean lowered brows, mean stretch."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        c = self.columns_

        def mean(a: str, b: str) -> np.ndarray:
            return (X[:, c[a]] + X[:, c[b]]) / 2

        return {"smile": mean("mouthSmileLeft", "mouthSmileRight"), "brow": mean("browDownLeft", "browDownRight"),
                "stretch": mean("mouthStretchLeft", "mouthStretchRight")}

    def predict_proba(self, X) -> np.ndarray:
        cue = self.cues(X)
        smile = _sigmoid((cue["smile"] - self.smile) / SOFTNESS["smile"])
        not_grimace = _sigmoid((self.stretch_share * cue["smile"] - cue["stretch"]) / SOFTNESS["stretch"])
        happy = smile * not_grimace
        confused = (1 - happy) * _sigmoid((cue["brow"] - self.brow_down) / SOFTNESS["brow"])
        return np.stack([confused, 1 - happy - confused, happy], axis=1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
