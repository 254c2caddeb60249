"""Named features of a face from MediaPipe FaceLandmarker's output: geometry, head pose, gaze, blendshapes.

``LandmarkFeaturizer`` (scikit-learn transformer) for tables, ``face_features`` for one live frame.
"""

from smartsession.features.featurizer import LandmarkFeaturizer, face_features, face_vector
from smartsession.features.geometry import FEATURE_NAMES

__all__ = ["FEATURE_NAMES", "LandmarkFeaturizer", "face_features", "face_vector"]
