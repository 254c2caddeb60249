"""The student's own face mesh drawn over their camera preview, from landmark coordinates only.

Points go to this page's browser view and nowhere else: never stored, never sent to the hub.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import numpy as np
import traitlets


class LandmarkOverlay(anywidget.AnyWidget):
    """A transparent canvas of landmark dots; ``show(landmarks)`` takes normalised (N, 2+) coordinates."""

    _esm = Path(__file__).with_name("overlay.js")

    width = traitlets.Int(320).tag(sync=True)
    height = traitlets.Int(240).tag(sync=True)
    mirror = traitlets.Bool(True, help="Match a mirrored camera preview.").tag(sync=True)
    color = traitlets.Unicode("#4fc3f7").tag(sync=True)
    # float32 x, y pairs in 0-1 image coordinates, sent as one binary buffer.
    points = traitlets.Bytes(b"").tag(sync=True)

    def show(self, landmarks: np.ndarray | None) -> None:
        """Draw these landmarks (normalised x, y in the first two columns); None clears the overlay."""
        if landmarks is None or len(landmarks) == 0:
            self.points = b""
            return
        xy = np.asarray(landmarks, dtype=np.float32)
        if xy.ndim != 2 or xy.shape[1] < 2:
            raise ValueError(f"landmarks must be an (N, 2) or (N, 3) array, got shape {xy.shape}")
        # A face from the browser has only some landmarks; the rest are NaN and have no dot.
        xy = xy[np.isfinite(xy[:, :2]).all(axis=1)]
        self.points = np.ascontiguousarray(xy[:, :2]).tobytes()

    def clear(self) -> None:
        self.points = b""
