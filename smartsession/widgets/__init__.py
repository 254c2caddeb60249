"""Widgets of the student side: the camera (frames in, RGB arrays out) and the landmark overlay.

``Camera`` is the default; ``smartsession.widgets.webrtc.WebRTCCamera`` offers the same API over ipywebrtc.
"""

from smartsession.widgets.camera import Camera
from smartsession.widgets.overlay import LandmarkOverlay

__all__ = ["Camera", "LandmarkOverlay"]
