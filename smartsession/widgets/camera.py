"""The student's webcam as a widget: the browser sends JPEG frames, Python code gets RGB arrays.

``Camera`` is the default (an anywidget, ``camera.js`` beside it); ``camera.on_frame(f)`` is the whole API.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from smartsession.widgets.frames import FrameCallback, FrameDispatcher, FrameTiming, PendingFrame

#: What each camera status means for the student, in plain words and with what to do.
STATUS_MESSAGES = {
    "off": "Camera off.",
    "starting": "Starting the camera: allow camera access if the browser asks.",
    "live": "Camera on. Frames are analysed in memory and never stored or shared; only states and scores are.",
    "hidden": "Paused while this tab is hidden: come back to this tab to continue.",
    "denied": "Camera permission denied: allow camera access in the browser's address bar, then press Try again.",
    "no-camera": "No camera found: plug in or switch on a webcam, then press Try again.",
    "in-use": "The camera is busy in another app (a video call?): close that app, then press Try again.",
    "insecure": "The camera only works on a secure page: open this page over https or on localhost.",
    "unsupported": "This browser cannot use a camera here: open the page in a recent Chrome, Edge or Firefox.",
    "ended": "The camera was disconnected: plug it back in, then press Try again.",
    "error": "The camera could not start: press Try again or reload the page.",
}
#: Statuses where no frames flow until the student does something.
ERROR_STATUSES = ("denied", "no-camera", "in-use", "insecure", "unsupported", "ended", "error")


def status_message(status: str, detail: str = "") -> str:
    """The sentence shown to the student for a camera status (unknown statuses read as a generic error)."""
    text = STATUS_MESSAGES.get(status, STATUS_MESSAGES["error"])
    if status not in STATUS_MESSAGES or (status == "error" and detail):
        text = f"{text} ({detail or status})"
    return text


class CameraBase:
    """What every camera implementation offers: ``on_frame``, counts, closing; frames run on a worker thread."""

    def _init_frames(self) -> None:
        self._frames = FrameDispatcher(self._frame_done)

    def on_frame(self, callback: FrameCallback, remove: bool = False) -> None:
        """Call ``callback(frame, t)`` for frames: RGB uint8 (H, W, 3) and capture time in unix seconds.

        Callbacks run one frame at a time on a worker thread; frames arriving meanwhile are dropped
        except the newest, so a slow callback makes the rate drop, never the delay grow.
        """
        if remove:
            self._frames.remove(callback)
        else:
            self._frames.add(callback)

    @property
    def counts(self) -> dict[str, int]:
        """Frames received, processed, dropped (for a newer one), bad (not an image or too large), refused (camera
        off), errors (callback); bytes received."""
        return dict(self._frames.counts)

    @property
    def last_error(self) -> str:
        return self._frames.last_error

    def _frame_done(self, frame: PendingFrame, processed: bool, timing: FrameTiming | None) -> None:
        """Hook for implementations that acknowledge frames."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Camera(CameraBase, anywidget.AnyWidget):
    """Webcam capture in the browser (getUserMedia), frames to the kernel as binary JPEG buffers.

    At most ``max_in_flight`` frames wait for the kernel at any time; the browser skips ticks
    beyond that and the kernel keeps only the newest waiting frame.
    """

    _esm = Path(__file__).with_name("camera.js")
    _css = Path(__file__).with_name("camera.css")

    width = traitlets.Int(640, help="Capture width in pixels.").tag(sync=True)
    height = traitlets.Int(480, help="Capture height in pixels.").tag(sync=True)
    fps = traitlets.Float(10.0, help="Frames captured per second (at most).").tag(sync=True)
    quality = traitlets.Float(0.8, help="JPEG quality, 0-1.").tag(sync=True)
    max_in_flight = traitlets.Int(2, help="Frames that may await the kernel's ack at once.").tag(sync=True)
    active = traitlets.Bool(True, help="Capturing; False releases the camera.").tag(sync=True)
    #: Not synced, so only kernel code changes it: a page can set ``active`` over its comm, never this.
    accept_frames = traitlets.Bool(True, help="Frames are decoded only while this and active are True.")
    mirror = traitlets.Bool(True, help="Show the preview mirrored, as people expect of a selfie view.").tag(sync=True)
    status = traitlets.Unicode("off", help="Set by the browser: one of STATUS_MESSAGES.").tag(sync=True)
    detail = traitlets.Unicode("", help="Set by the browser: the underlying error, for the log.").tag(sync=True)
    message = traitlets.Unicode(STATUS_MESSAGES["off"], help="The status in plain words.").tag(sync=True)
    stats = traitlets.Dict(help="Set by the browser every second: sent, skipped, fps, rtt_ms_median/p90...").tag(
        sync=True
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_frames()
        self.on_msg(self._on_custom)

    @traitlets.validate("fps")
    def _valid_fps(self, proposal):
        if not 0.5 <= proposal["value"] <= 30:
            raise traitlets.TraitError(f"fps must be between 0.5 and 30, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("max_in_flight")
    def _valid_in_flight(self, proposal):
        if not 1 <= proposal["value"] <= 8:
            raise traitlets.TraitError(f"max_in_flight must be between 1 and 8, got {proposal['value']}")
        return proposal["value"]

    @traitlets.observe("status", "detail")
    def _describe(self, _change) -> None:
        self.message = status_message(self.status, self.detail)

    def _on_custom(self, _widget, content: Any, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "frame":
            return
        try:
            frame = PendingFrame(
                seq=int(content["seq"]), t=float(content["t"]), data=bytes(buffers[0]), received=time.time()
            )
        except (KeyError, IndexError, TypeError, ValueError):
            self._frames.counts["bad"] += 1
            return
        if not (self.active and self.accept_frames):
            # The camera is off (before the student consents, or paused): the page sends nothing then, and
            # whatever a client sends anyway is never decoded.
            self._frames.counts["refused"] += 1
            self._frame_done(frame, False, None)
            return
        self._frames.submit(frame)

    def _frame_done(self, frame: PendingFrame, processed: bool, timing: FrameTiming | None) -> None:
        if self.comm is None:
            return
        ack = {"type": "ack", "seq": frame.seq, "processed": processed}
        if timing is not None:
            # Durations on the kernel's clock, so the browser can split its round trip without clock skew.
            ack["kernel_ms"] = {k: round(v * 1000, 2) for k, v in vars(timing).items()}
        self.send(ack)

    def close(self) -> None:
        """Stop the frame worker and close the widget; closing twice is harmless."""
        self._frames.close()
        super().close()
