"""The face featurizer as a scikit-learn transformer, plus the fast single-face path of the live loop.

Both run :func:`smartsession.features.geometry.compute`, so training data and live frames get identical features.
A face enters as one flat row: its 478 landmarks (x, y, z), its 52 blendshapes and its 4x4 pose matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from smartsession.features.geometry import FEATURE_NAMES, compute
from smartsession.vision.landmarks import N_BLENDSHAPES, N_LANDMARKS

#: Width of one face's row: landmarks, then blendshapes, then the pose matrix (row-major).
FACE_ROW_WIDTH = N_LANDMARKS * 3 + N_BLENDSHAPES + 16
_LM_END = N_LANDMARKS * 3
_BS_END = _LM_END + N_BLENDSHAPES


def face_row(landmarks: np.ndarray, blendshapes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """One face as a flat row of ``FACE_ROW_WIDTH`` numbers (the featurizer's input)."""
    return np.concatenate([np.asarray(landmarks, np.float64).reshape(-1), np.asarray(blendshapes, np.float64),
                           np.asarray(matrix, np.float64).reshape(-1)])


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
    """Faces as flat rows (n, FACE_ROW_WIDTH) of FaceLandmarker output -> named features (n, len(FEATURE_NAMES)).

    ``image_size`` is the (width, height) the landmarks were normalised by; give it here, or per sample to
    :meth:`transform` (an array of shape (n, 2)), because x and y are scaled by different sides of the frame.
    Stateless: ``fit`` learns nothing but the input width.
    """

    def __init__(self, image_size: tuple[int, int] | None = None):
        self.image_size = image_size

    def fit(self, X, y=None):
        X = self._validate(X)
        self.n_features_in_ = X.shape[1]
        return self

    @staticmethod
    def _validate(X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != FACE_ROW_WIDTH:
            raise ValueError(
                f"expected faces as rows of {FACE_ROW_WIDTH} numbers ({N_LANDMARKS} landmarks x 3, "
                f"{N_BLENDSHAPES} blendshapes, a 4x4 pose matrix; see face_row), got shape {X.shape}"
            )
        return X

    def transform(self, X, image_size=None) -> np.ndarray:
        X = self._validate(X)
        size = image_size if image_size is not None else self.image_size
        n = len(X)
        return compute(X[:, :_LM_END].reshape(n, N_LANDMARKS, 3), _sizes(size, n), X[:, _LM_END:_BS_END],
                       X[:, _BS_END:].reshape(n, 4, 4))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(FEATURE_NAMES, dtype=object)


def face_vector(face) -> np.ndarray:
    """Features of one face (a :class:`~smartsession.vision.landmarks.FaceLandmarks` with a face) as a 1-D array
    ordered like ``FEATURE_NAMES``: the live loop's path."""
    return compute(face.landmarks[None], np.asarray([face.image_size], dtype=np.float64),
                   face.blendshapes[None], face.matrix[None])[0]


def face_vectors(faces) -> np.ndarray:
    """Features of several faces (each with a face) as rows, in one pass over the stacked arrays: a batch from the
    page costs about what one face does, since numpy's per-call overhead, not the arithmetic, is the cost here."""
    return compute(np.stack([f.landmarks for f in faces]), np.asarray([f.image_size for f in faces], np.float64),
                   np.stack([f.blendshapes for f in faces]), np.stack([f.matrix for f in faces]))


def face_features(face) -> dict[str, float]:
    """Features of one face as a ``{name: value}`` dict."""
    return dict(zip(FEATURE_NAMES, face_vector(face).tolist()))
