"""The landmark featurizer as a scikit-learn transformer, plus the fast single-face path of the live loop.

Both run :func:`smartsession.features.geometry.compute`, so training data and live frames get identical features.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from smartsession.features.geometry import FEATURE_NAMES, compute
from smartsession.vision.landmarks import N_LANDMARKS


def _sizes(image_size, n: int) -> np.ndarray:
    if image_size is None:
        # Landmarks already in isotropic units (x, y, z on one scale): a unit frame.
        return np.ones((n, 2))
    size = np.asarray(image_size, dtype=np.float64)
    if size.shape == (2,):
        size = np.broadcast_to(size, (n, 2))
    if size.shape != (n, 2) or not np.all(size > 0):
        raise ValueError(
            f"image_size must be (width, height) or an array of shape ({n}, 2) with positive sizes, "
            f"got shape {size.shape}"
        )
    return size


class LandmarkFeaturizer(TransformerMixin, BaseEstimator):
    """FaceMesh landmarks (n, 478, 3), normalised as MediaPipe gives them -> named features (n, k).

    ``image_size`` is the (width, height) the landmarks were normalised by; give it here, or per sample to
    :meth:`transform` (an array of shape (n, 2)), because x and y are scaled by different sides of the frame.
    Stateless: ``fit`` learns nothing.
    """

    def __init__(self, image_size: tuple[int, int] | None = None):
        self.image_size = image_size

    def fit(self, X, y=None):
        self._validate(X)
        self.n_features_in_ = len(FEATURE_NAMES)
        return self

    @staticmethod
    def _validate(X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 2 and X.shape[1] == N_LANDMARKS * 3:
            X = X.reshape(-1, N_LANDMARKS, 3)
        if X.ndim != 3 or X.shape[1:] != (N_LANDMARKS, 3):
            raise ValueError(
                f"expected landmarks of shape (n, {N_LANDMARKS}, 3) from FaceMesh with refine_landmarks=True, "
                f"got shape {X.shape}"
            )
        return X

    def transform(self, X, image_size=None) -> np.ndarray:
        X = self._validate(X)
        size = image_size if image_size is not None else self.image_size
        return compute(X, _sizes(size, len(X)))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(FEATURE_NAMES, dtype=object)


def face_vector(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Features of one face (478, 3) as a 1-D array ordered like ``FEATURE_NAMES``: the live loop's path."""
    return compute(landmarks[None], np.asarray([image_size], dtype=np.float64))[0]


def face_features(landmarks: np.ndarray, image_size: tuple[int, int]) -> dict[str, float]:
    """Features of one face as a ``{name: value}`` dict."""
    return dict(zip(FEATURE_NAMES, face_vector(landmarks, image_size).tolist()))
