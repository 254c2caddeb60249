"""Named, scale-invariant features of a face computed from its FaceMesh landmarks.

``LandmarkFeaturizer`` (scikit-learn transformer) for tables, ``face_features`` for one live frame.
"""

from smartsession.features.featurizer import LandmarkFeaturizer, face_features, face_vector
from smartsession.features.geometry import FEATURE_NAMES

__all__ = ["FEATURE_NAMES", "LandmarkFeaturizer", "face_features", "face_vector"]
