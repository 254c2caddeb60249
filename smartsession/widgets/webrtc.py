"""The same camera API over ipywebrtc (CameraStream + ImageRecorder), for researchers in JupyterLab.

One snapshot at a time: the next is asked for only after the last was processed, so nothing piles up.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as w
import traitlets

try:
    from ipywebrtc import CameraStream, ImageRecorder
except ImportError:  # an optional extra: the pages use the anywidget Camera
    raise ImportError("WebRTCCamera needs ipywebrtc: pip install 'smartsession[webrtc]'") from None

from smartsession.widgets.camera import CameraBase
from smartsession.widgets.frames import FrameTiming, PendingFrame

#: Seconds without an image before the snapshot is asked for again (page not connected yet, or a lost reply).
RETRY_AFTER = 2.0


class WebRTCCamera(CameraBase, w.VBox):
    """``on_frame(callback)`` like :class:`~smartsession.widgets.camera.Camera`, built on ipywebrtc.

    ipywebrtc exposes no capture time, so ``t`` is when the kernel asked for the snapshot (a little
    before the browser grabbed it), and camera errors show only in the browser's console.
    """

    fps = traitlets.Float(10.0, help="Snapshots per second (at most).")
    active = traitlets.Bool(True, help="Taking snapshots.")
    status = traitlets.Unicode("starting", help="starting, live or off.")

    def __init__(self, width: int = 640, height: int = 480, fps: float = 10.0, **kwargs: Any) -> None:
        self.stream = CameraStream(constraints={"audio": False, "video": {"width": width, "height": height}})
        self.recorder = ImageRecorder(stream=self.stream, format="jpeg")
        super().__init__(children=[self.stream], fps=fps, **kwargs)
        self._init_frames()
        self._seq = 0
        self._asked_at = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False
        self.recorder.image.observe(self._on_image, names="value")
        if self.active:
            self._snap()

    @traitlets.validate("fps")
    def _valid_fps(self, proposal):
        if not 0.5 <= proposal["value"] <= 30:
            raise traitlets.TraitError(f"fps must be between 0.5 and 30, got {proposal['value']}")
        return proposal["value"]

    @traitlets.observe("active")
    def _on_active(self, change) -> None:
        if change["new"]:
            self._snap()
        else:
            self.status = "off"

    def _snap(self) -> None:
        if self._closed or not self.active:
            return
        self._asked_at = time.time()
        # A page that connects after the kernel asked sees recording=True as its initial state, which
        # triggers nothing: flip it so the browser always sees a change, and ask again if no image comes.
        self.recorder.recording = False
        self.recorder.recording = True
        self._schedule(RETRY_AFTER)

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(delay, self._snap)
        self._timer.daemon = True
        self._timer.start()

    def _on_image(self, change) -> None:
        data = bytes(change["new"] or b"")
        if not data:
            return
        if not self.active:  # a snapshot that arrives after pausing is not decoded
            self._frames.counts["refused"] += 1
            return
        if self._timer is not None:
            self._timer.cancel()
        self.status = "live"
        self._seq += 1
        self._frames.submit(PendingFrame(seq=self._seq, t=self._asked_at, data=data, received=time.time()))

    def _frame_done(self, frame: PendingFrame, processed: bool, timing: FrameTiming | None) -> None:
        # Pace snapshots to ``fps``, counting the time the last one took.
        self._schedule(max(0.0, 1.0 / self.fps - (time.time() - frame.t)))

    def close(self) -> None:
        """Stop snapshots, the worker and the widgets; closing twice is harmless."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._frames.close()
        self.recorder.close()
        self.stream.close()
        super().close()
