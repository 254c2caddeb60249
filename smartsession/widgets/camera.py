"""The student's webcam as a widget: the browser sends JPEG frames (Python code gets RGB arrays), or, in browser
analysis mode, runs the face landmarker itself and sends packed faces (Python code gets ``FaceLandmarks``).

``Camera`` is the default (an anywidget, ``camera.js`` beside it); ``on_frame(f)``, ``on_face(f)`` and
``on_faces(f)`` are the API. Faces travel in batches, one message every ``batch_seconds`` (docs/WIDGETS.md).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import anywidget
import traitlets

from smartsession.vision import packed
from smartsession.widgets.frames import FrameCallback, FrameDispatcher, FrameTiming, PendingFrame

#: What each camera status means for the student, in plain words and with what to do ("live": LIVE_MESSAGES).
STATUS_MESSAGES = {
    "off": "Camera off.",
    "starting": "Starting the camera: allow camera access if the browser asks.",
    "hidden": "Paused while this tab is hidden: come back to this tab to continue.",
    "denied": "Camera permission denied: allow camera access in the browser's address bar, then press Try again.",
    "no-camera": "No camera found: plug in or switch on a webcam, then press Try again.",
    "in-use": "The camera is busy in another app (a video call?): close that app, then press Try again.",
    "insecure": "The camera only works on a secure page: open this page over https or on localhost.",
    "unsupported": "This browser cannot use a camera here: open the page in a recent Chrome, Edge or Firefox.",
    "ended": "The camera was disconnected: plug it back in, then press Try again.",
    "error": "The camera could not start: press Try again or reload the page.",
}
#: What leaves the device in each analysis mode, shown while the camera is live (literally true: see camera.js).
LIVE_MESSAGES = {
    "browser": "Camera on. Your face is analysed in this browser: only numbers describing it (face points, "
               "expressions, head angle) go to the class server, never the picture.",
    "server": "Camera on. Pictures go to the class server, are analysed in memory there and dropped at once; "
              "never stored or shared. Only states and scores are.",
}
ANALYSIS_MODES = tuple(LIVE_MESSAGES)
#: Statuses where no frames flow until the student does something.
ERROR_STATUSES = ("denied", "no-camera", "in-use", "insecure", "unsupported", "ended", "error")
#: Packed faces one batch message may carry at most: a second of capture at the widget's highest rate. The page
#: keeps the newest this many; the kernel refuses a larger batch whole.
MAX_BATCH_FACES = packed.MAX_BATCH
#: Seconds between batch messages the page may be set to; 0 is the per-frame transport (a message a face).
BATCH_SECONDS_RANGE = (0.25, 2.0)

#: Packed faces a second the kernel analyses at most in batches (the camera's highest rate), with a second's more
#: in hand for a batch that arrives late and the one after it on time.
MAX_FACES_PER_SECOND = MAX_BATCH_FACES

FaceBatchCallback = Callable[[list, list], object]


class FaceBudget:
    """A token bucket of frames (packed faces, or pictures): ``take(n, now)`` says whether ``n`` more may be analysed
    now (pure, clock given)."""

    def __init__(self, rate: float = MAX_FACES_PER_SECOND, burst: float = 2 * MAX_FACES_PER_SECOND) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, None

    def take(self, n: int, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if n > self.tokens:
            return False
        self.tokens -= n
        return True


def decode_batch(data: tuple[bytes, ...]) -> list[packed.PackedFace]:
    """A batch's packed faces in capture order; one malformed face refuses the whole batch
    (:class:`~smartsession.vision.packed.PackedFaceError`), so the kernel never analyses half of what was sent."""
    faces = [packed.decode(one) for one in data]
    if any(b.t < a.t for a, b in zip(faces, faces[1:])):
        raise packed.PackedFaceError("a batch's faces must be in capture order: reload the page")
    return faces


def status_message(status: str, detail: str = "", mode: str = "server") -> str:
    """The sentence shown to the student for a camera status (unknown statuses read as a generic error)."""
    if status == "live":
        return LIVE_MESSAGES.get(mode, "Camera on. Getting the face analysis ready in this browser: nothing is sent "
                                       "until it is.")
    text = STATUS_MESSAGES.get(status, STATUS_MESSAGES["error"])
    if status not in STATUS_MESSAGES or (status == "error" and detail):
        text = f"{text} ({detail or status})"
    return text


class CameraBase:
    """What every camera implementation offers: ``on_frame``, counts, closing; frames run on a worker thread."""

    def _init_frames(self) -> None:
        self._frames = FrameDispatcher(self._frame_done)
        # Every face message is a batch (the per-frame transport sends batches of one).
        self._faces = FrameDispatcher(self._frame_done, decode=decode_batch, refused=(packed.PackedFaceError,))
        self._face_callbacks: dict[Any, Callable] = {}

    def on_faces(self, callback: FaceBatchCallback, remove: bool = False) -> None:
        """Call ``callback(faces, times)`` once per batch of faces the browser landmarked (browser analysis mode):
        a list of :class:`~smartsession.vision.landmarks.FaceLandmarks` in capture order and their capture times
        in unix seconds. A batch is what the page gathered since its last message (``batch_seconds``).

        A batch (a ``faces`` message) is analysed in the comm handler, on the kernel's event loop, when it arrives:
        it costs a few milliseconds, the page keeps at most ``max_in_flight`` of them waiting, and the kernel's
        "idle" status for the message is then its acknowledgement. Single faces (``batch_seconds = 0``, the
        per-frame transport) go through the worker thread with :meth:`on_frame`'s newest-wins rule and an ack
        each. No picture is involved.
        """
        self._on_batches(callback, lambda batch, _t: callback([b.face for b in batch], [b.t for b in batch]),
                         remove)

    def on_face(self, callback, remove: bool = False) -> None:
        """Call ``callback(face, t)`` for each face of each batch (see :meth:`on_faces`), in capture order."""

        def each(batch, _t):
            for one in batch:
                callback(one.face, one.t)

        self._on_batches(callback, each, remove)

    def _on_batches(self, callback, adapter, remove: bool) -> None:
        if remove:
            adapter = self._face_callbacks.pop(callback, None)
            if adapter is not None:
                self._faces.remove(adapter)
            return
        if not callable(callback):
            raise TypeError(f"on_face(s) needs a function, got {type(callback).__name__}")
        if callback not in self._face_callbacks:
            self._face_callbacks[callback] = adapter
            self._faces.add(adapter)

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
    def face_counts(self) -> dict[str, int]:
        """The same counts for packed faces (browser analysis mode)."""
        return dict(self._faces.counts)

    @property
    def last_error(self) -> str:
        return self._frames.last_error or self._faces.last_error

    def _frame_done(self, frame: PendingFrame, processed: bool, timing: FrameTiming | None) -> None:
        """Hook for implementations that acknowledge frames."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _non_finite(value: Any, path: str, depth: int = 0) -> str | None:
    """The path of the first NaN or infinity in a decoded JSON value (Python's json reads ``NaN`` and ``Infinity``)."""
    if value.__class__ is float:
        return None if math.isfinite(value) else path
    if depth > 8:
        return path  # deeper than any message of ours: refused like a bad number
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}", depth + 1)
        if found:
            return found
    return None


def frame_numbers(content: dict) -> tuple[int, float]:
    """``seq`` and ``t`` of a page's frame or face message; ``ValueError`` saying what is wrong."""
    bad = _non_finite(content, "message")
    if bad:
        raise ValueError(f"{bad} is not a finite number: send finite numbers only")
    seq, t = content.get("seq"), content.get("t")
    if seq.__class__ is not int or not 0 <= seq < 2**53:
        raise ValueError("seq must be an integer from 0 to 2**53")
    if t.__class__ not in (int, float) or not 0 <= t < 1e11:
        raise ValueError("t must be the capture time in unix seconds")
    return seq, float(t)


class Camera(CameraBase, anywidget.AnyWidget):
    """Webcam capture in the browser (getUserMedia), frames to the kernel as binary JPEG buffers, or (with
    ``analysis="browser"``) the face landmarker run in the page and packed faces to the kernel instead, gathered
    into one message every ``batch_seconds`` (at most :data:`MAX_BATCH_FACES` faces, the newest), analysed when it
    arrives and acknowledged by the kernel's "idle" status for that message (an ack is sent only for a batch refused),
    with the page's ``stats`` riding on a batch every few seconds.

    At most ``max_in_flight`` messages (frames, or batches) wait for the kernel at any time; the browser skips
    ticks beyond that (a batch keeps gathering instead) and the kernel keeps only the newest waiting one. A browser that cannot run the landmarker
    (no WebAssembly, the files fail to load, slower than ``min_browser_fps``) falls back to sending frames and
    says so in ``mode`` and ``mode_detail``.
    """

    _esm = Path(__file__).with_name("camera.js")
    _css = Path(__file__).with_name("camera.css")

    width = traitlets.Int(640, help="Capture width in pixels.").tag(sync=True)
    height = traitlets.Int(480, help="Capture height in pixels.").tag(sync=True)
    fps = traitlets.Float(10.0, help="Frames captured per second (at most).").tag(sync=True)
    # A picture costs the kernel a whole face analysis (~13 ms of MediaPipe and ~1.5 ms of JPEG decoding on one
    # core), a packed face 0.4 ms: the page keeps capturing at fps for its own landmarker and sends pictures at
    # this rate. The kernel refuses pictures beyond it (a page that does not pace them), with a second's burst.
    picture_fps = traitlets.Float(0.0, help="Pictures sent to the kernel a second at most (server analysis); "
                                            "0: every captured frame (fps).").tag(sync=True)
    quality = traitlets.Float(0.8, help="JPEG quality, 0-1.").tag(sync=True)
    max_in_flight = traitlets.Int(2, help="Frames that may await the kernel's ack at once.").tag(sync=True)
    active = traitlets.Bool(True, help="Capturing; False releases the camera.").tag(sync=True)
    #: Not synced, so only kernel code changes it: a page can set ``active`` over its comm, never this.
    accept_frames = traitlets.Bool(True, help="Frames are decoded only while this and active are True.")
    accept_pictures = traitlets.Bool(True, help="False: only packed faces are taken, pictures are refused.")
    mirror = traitlets.Bool(True, help="Show the preview mirrored, as people expect of a selfie view.").tag(sync=True)
    status = traitlets.Unicode("off", help="Set by the browser: one of STATUS_MESSAGES.").tag(sync=True)
    detail = traitlets.Unicode("", help="Set by the browser: the underlying error, for the log.").tag(sync=True)
    message = traitlets.Unicode(STATUS_MESSAGES["off"], help="The status in plain words.").tag(sync=True)
    # No echo back to the page (ipywidgets 8 echoes every update from the page): the page wrote it.
    stats = traitlets.Dict(help="Set by the browser every stats_seconds: sent, skipped, fps, rtt_ms_median/p90...").tag(
        sync=True, echo_update=False
    )
    # 0.5 s, from benchmarks/capacity.py (docs/BENCHMARKS.md): with 1 s the batch's own wait took the student's
    # feedback p90 past 1.5 s at 100 students on 2 cores with the machine 69 % busy; with 0.5 s it was 0.77 s there.
    batch_seconds = traitlets.Float(0.5, help="Seconds of packed faces per message to the kernel (browser analysis); "
                                              "0 sends each face on its own (the per-frame transport).").tag(sync=True)
    max_batch = traitlets.Int(MAX_BATCH_FACES, help="Faces a batch message carries at most (the newest).").tag(
        sync=True)
    analysis = traitlets.Enum(ANALYSIS_MODES, "server", help="Where faces should be analysed.").tag(sync=True)
    assets = traitlets.Dict(help="URLs of the browser landmarker's files by name (see serve/assets.py).").tag(
        sync=True
    )
    min_browser_fps = traitlets.Float(3.0, help="Below this rate the browser falls back to sending frames.").tag(
        sync=True
    )
    landmark_indices = traitlets.List(list(packed.FEATURE_LANDMARKS), read_only=True,
                                      help="Landmarks a packed face carries (besides the four that bound the face).").tag(
        sync=True
    )
    mode = traitlets.Unicode("", help="Set by the browser: the analysis mode in use ('' until it knows).").tag(
        sync=True
    )
    mode_detail = traitlets.Unicode("", help="Set by the browser: why it fell back to server mode.").tag(sync=True)
    # Set by the kernel while serve's face pipe is open (open_pipe): the page sends its batches there instead of
    # over the comm, and falls back to the comm whenever the pipe closes or refuses it.
    pipe = traitlets.Dict(help="Where the page sends batches of faces past Jupyter's messaging: {'path', 'token'}; "
                               "empty: over the comm.").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_frames()
        self._face_budget = FaceBudget()
        self._picture_budget = self._new_picture_budget()
        self._pipe_reply: Callable[[dict], None] | None = None  # set by the open face pipe
        self._pipe = None
        self.on_msg(self._on_custom)

    def open_pipe(self, loop=None) -> bool:
        """Take batches of faces through serve's face pipe (``serve/pipe.py``) when this kernel is one of
        ``smartsession serve``'s (its environment says where), on the kernel's event loop ``loop`` (default: the
        running one). False when there is no pipe to open: batches then go over the comm, as they also do while
        the pipe is down."""
        from smartsession.widgets.pipe import FacePipe

        if self._pipe is None:
            self._pipe = FacePipe.from_environment(self)
            if self._pipe is not None:
                self._pipe.start(loop)
        return self._pipe is not None

    def _new_picture_budget(self) -> FaceBudget:
        rate = self.picture_fps or self.fps
        return FaceBudget(rate=rate, burst=max(2.0, rate))

    @traitlets.observe("fps", "picture_fps")
    def _pace_pictures(self, _change) -> None:
        self._picture_budget = self._new_picture_budget()

    @traitlets.validate("fps")
    def _valid_fps(self, proposal):
        if not 0.5 <= proposal["value"] <= 30:
            raise traitlets.TraitError(f"fps must be between 0.5 and 30, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("picture_fps")
    def _valid_picture_fps(self, proposal):
        if proposal["value"] != 0 and not 0.5 <= proposal["value"] <= 30:
            raise traitlets.TraitError(f"picture_fps must be 0 (every captured frame) or between 0.5 and 30, "
                                       f"got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("batch_seconds")
    def _valid_batch_seconds(self, proposal):
        lo, hi = BATCH_SECONDS_RANGE
        if proposal["value"] != 0 and not lo <= proposal["value"] <= hi:
            raise traitlets.TraitError(f"batch_seconds must be 0 (a message a face) or between {lo} and {hi}, "
                                       f"got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("max_batch")
    def _valid_max_batch(self, proposal):
        if not 1 <= proposal["value"] <= MAX_BATCH_FACES:
            raise traitlets.TraitError(f"max_batch must be between 1 and {MAX_BATCH_FACES}, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("max_in_flight")
    def _valid_in_flight(self, proposal):
        if not 1 <= proposal["value"] <= 8:
            raise traitlets.TraitError(f"max_in_flight must be between 1 and 8, got {proposal['value']}")
        return proposal["value"]

    @traitlets.observe("status", "detail", "mode", "mode_detail")
    def _describe(self, _change) -> None:
        message = status_message(self.status, self.detail, self.mode)
        if self.status == "live" and self.analysis == "browser" and self.mode == "server":
            message += f" (This browser cannot analyse your face itself: {self.mode_detail or 'unknown reason'}.)"
        self.message = message

    def _on_custom(self, _widget, content: Any, buffers: list) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind in ("frame", "face", "faces"):
            self._receive(kind, content, buffers, piped=False)

    def receive_batch(self, data: bytes) -> None:
        """A batch of packed faces from serve's face pipe (``widgets/pipe.py``): checked, analysed and refused
        exactly as one sent over the comm, and always acknowledged, through the pipe (there is no "idle" status)."""
        try:
            seq, header, faces = packed.split_batch(data)
        except packed.PackedFaceError as refused:
            self._refuse_malformed("faces", packed.batch_number(data), refused, piped=True)
            return
        content = {"type": "faces", "seq": seq, "t": header.get("t")}
        if "stats" in header:
            content["stats"] = header["stats"]
        self._receive("faces", content, faces, piped=True)

    def _reply_piped(self, ack: dict) -> None:
        reply = self._pipe_reply
        if reply is not None:
            ack["at"] = time.time()  # when the kernel answered, on its clock (benchmarks time the way back)
            reply(ack)

    def _refuse_malformed(self, kind: str, seq: Any, refused: Exception, piped: bool) -> None:
        """Count a message that could not be read, and tell the page why (its number when it has a usable one)."""
        dispatcher = self._frames if kind == "frame" else self._faces
        dispatcher.counts["bad"] += 1
        dispatcher.last_error = f"{kind} message refused: {refused}"
        ack = {"type": "ack", "seq": seq, "processed": False, "error": str(refused)}
        if piped:
            self._reply_piped(ack)
        elif seq.__class__ is int and 0 <= seq < 2**53 and self.comm is not None:
            self.send(ack)

    def _receive(self, kind: str, content: dict, buffers: list, piped: bool) -> None:
        dispatcher = self._frames if kind == "frame" else self._faces
        try:
            seq, t = frame_numbers(content)
        except ValueError as refused:
            # Refused here, before anything downstream keeps the number: a NaN capture time once poisoned the
            # smoothing, and every state after it was refused by the hub. The page learns why; the next works.
            self._refuse_malformed(kind, content.get("seq"), refused, piped)
            return
        try:
            frame = self._pending(kind, seq, t, buffers, piped)
        except (IndexError, TypeError, ValueError) as err:
            dispatcher.counts["bad"] += 1
            dispatcher.last_error = f"{kind} message refused: {err}"
            if kind == "faces":
                self._frame_done(PendingFrame(seq, 0.0, (), time.time(), piped=piped), False, None)
            return
        if kind == "faces" and isinstance(content.get("stats"), dict):
            # The page's counters ride on a batch (every few seconds) rather than in a message of their own, which
            # cost the kernel and the server a message and its status each way. Taken as if the page had set the
            # trait: observers see it, nothing is sent back.
            self.set_state({"stats": content["stats"]})
        if not (self.active and self.accept_frames) or (kind == "frame" and not self.accept_pictures):
            # The camera is off (before the student consents, or paused): the page sends nothing then, and
            # whatever a client sends anyway is never decoded.
            dispatcher.counts["refused"] += 1
            self._frame_done(frame, False, None)
            return
        # A page sends no more pictures a second than picture_fps (or fps), and no more faces in batches than any
        # camera captures; past that it is a client that does not wait for its acks, and what it sends is refused
        # undecoded, so it cannot make its kernel work harder than a real page would. (Batches are analysed in the
        # handler, so no newest-wins slot bounds them; single faces go through the worker's slot.)
        budget = None
        if kind == "frame":
            budget, most, what = self._picture_budget, self.picture_fps or self.fps, "pictures"
        elif frame.inline:
            budget, most, what = self._face_budget, MAX_FACES_PER_SECOND, "faces"
        if budget is not None and not budget.take(frame.count, time.monotonic()):
            dispatcher.counts["dropped"] += frame.count
            dispatcher.last_error = f"{kind} message refused: more than {most:g} {what} a second"
            self._frame_done(frame, False, None)
        elif frame.inline:
            dispatcher.run_now(frame)
        else:
            dispatcher.submit(frame)

    def _pending(self, kind: str, seq: int, t: float, buffers: list, piped: bool = False) -> PendingFrame:
        """The message as a frame or batch to dispatch; bounds checked before any byte is copied or decoded."""
        received = time.time()
        if kind == "frame":
            return PendingFrame(seq=seq, t=t, data=bytes(buffers[0]), received=received)
        limit = packed.message_size(packed.MAX_LANDMARKS)
        if kind == "face":
            buffers = buffers[:1] if buffers else []
        elif not 1 <= len(buffers) <= self.max_batch:
            raise ValueError(f"a batch carries 1-{self.max_batch} faces, this one {len(buffers)}")
        if not buffers:
            raise ValueError("no packed face")
        if any(len(b) > limit for b in buffers):
            raise ValueError("larger than any packed face")
        data = tuple(bytes(b) for b in buffers)
        # A batch is analysed in this handler (a few ms, see FrameDispatcher.run_now): the kernel's "idle" for
        # the message then says it is done, and no ack of its own is sent.
        return PendingFrame(seq=seq, t=t, data=data, received=received, inline=kind == "faces", piped=piped)

    def _frame_done(self, frame: PendingFrame, processed: bool, timing: FrameTiming | None) -> None:
        if not frame.piped and (self.comm is None or (processed and frame.inline)):
            return  # a batch analysed in its comm handler is acknowledged by the kernel's "idle" for its message
        ack = {"type": "ack", "seq": frame.seq, "processed": processed}
        if not isinstance(frame.data, bytes) and frame.data:
            ack["frames"] = frame.count  # a batch's: the page counts its frames from its own record too
        if timing is not None:
            # Durations on the kernel's clock, so the browser can split its round trip without clock skew.
            ack["kernel_ms"] = {k: round(v * 1000, 2) for k, v in vars(timing).items()}
        if frame.piped:
            self._reply_piped(ack)
        else:
            self.send(ack)

    def close(self) -> None:
        """Stop the frame workers and close the widget; closing twice is harmless."""
        self._frames.close()
        self._faces.close()
        if self._pipe is not None:
            self._pipe.stop()
            self._pipe = None
        super().close()
