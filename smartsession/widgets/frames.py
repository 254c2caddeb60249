"""How camera frames reach Python code: decoded off the comm handler, one at a time, newest first.

Both camera widgets hand encoded frames to a ``FrameDispatcher``; callbacks get RGB arrays and never see bytes.
In browser analysis mode the same machinery carries packed faces (``vision/packed.py``) instead of pictures.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The header check of the offline pipeline, reused so both paths refuse the same files the same way; it reads
# the size from a PNG's IHDR or a JPEG's start-of-frame without decoding a pixel.
from smartsession.vision.frames import MAX_SIDE, FrameError, _header_size, decode

log = logging.getLogger(__name__)

#: Largest width or height of a live frame. Webcams send 640x480 here; a larger frame is not from the page's
#: camera, and decoding one is what costs memory (a 0.75 MB PNG of 16000x16000 took a kernel to 1.9 GB).
MAX_FRAME_SIDE = MAX_SIDE
#: Largest encoded frame: a 1920x1080 JPEG is a few hundred KB, a PNG of that size a few MB.
MAX_FRAME_BYTES = 4 * 2**20

FrameCallback = Callable[[np.ndarray, float], object]


class FrameDecodeError(ValueError):
    """Bytes from the browser that are not a JPEG/PNG image; the frame is dropped, capture goes on."""


@dataclass(frozen=True)
class PendingFrame:
    seq: int  # the browser's frame number, echoed in its ack
    t: float  # capture time, unix seconds (browser clock)
    data: bytes | tuple[bytes, ...]  # encoded JPEG/PNG, or a batch of packed faces; decoded only by the worker
    received: float  # kernel time when it arrived, unix seconds
    inline: bool = False  # analysed in the comm handler (a batch of faces): the kernel's idle status acks it
    piped: bool = False  # came through serve's face pipe (widgets/pipe.py): acknowledged through it

    @property
    def size(self) -> int:
        """Bytes received for it (all of a batch's faces)."""
        return len(self.data) if isinstance(self.data, bytes) else sum(map(len, self.data))

    @property
    def count(self) -> int:
        """Frames it carries: 1, or a batch's faces."""
        return 1 if isinstance(self.data, bytes) else len(self.data)


@dataclass(frozen=True)
class FrameTiming:
    """Where a processed frame spent its time in the kernel, in seconds (one clock, so no skew)."""

    wait: float  # from arrival to the worker taking it from the slot
    decode: float  # JPEG -> RGB (or packed face -> FaceLandmarks)
    callbacks: float  # the on_frame callbacks


def frame_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a live frame from its header, or :class:`FrameDecodeError` before any decoding.

    Only JPEG and PNG frames whose header names their size, within :data:`MAX_FRAME_SIDE` and
    :data:`MAX_FRAME_BYTES`, pass: anything else would make the decoder allocate what the sender chose.
    """
    if not data:
        raise FrameDecodeError("empty frame: the browser sent no image data")
    if len(data) > MAX_FRAME_BYTES:
        raise FrameDecodeError(f"frame of {len(data)} bytes is larger than a webcam frame ({MAX_FRAME_BYTES} at most)")
    size = _header_size(data)
    if size is None:
        raise FrameDecodeError(f"frame of {len(data)} bytes is not a JPEG or PNG image with its size in its header")
    width, height = size
    if not (0 < width <= MAX_FRAME_SIDE and 0 < height <= MAX_FRAME_SIDE):
        raise FrameDecodeError(
            f"frame of {width}x{height} pixels is not a webcam frame (at most {MAX_FRAME_SIDE} pixels a side)"
        )
    return size


def decode_image(data: bytes) -> np.ndarray:
    """Decode a live JPEG/PNG frame to an RGB uint8 array (H, W, 3), after :func:`frame_size` accepted it."""
    frame_size(data)
    try:
        return decode(data, "camera frame")
    except FrameError as err:
        raise FrameDecodeError(str(err)) from None


class LatestFrame:
    """A one-slot, latest-wins hand-off: a new frame replaces the one still waiting, which is dropped.

    Pure logic plus a condition variable, so the back-pressure rule is testable without a browser.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: PendingFrame | None = None
        self._closed = False

    def offer(self, frame: PendingFrame) -> PendingFrame | None:
        """Make ``frame`` the next one to process; return the waiting frame it displaced, if any."""
        with self._cond:
            if self._closed:
                return frame
            dropped, self._pending = self._pending, frame
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> PendingFrame | None:
        """The newest waiting frame, waiting up to ``timeout`` seconds; None when closed or timed out."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is not None or self._closed, timeout)
            frame, self._pending = self._pending, None
            return None if self._closed else frame

    def close(self) -> PendingFrame | None:
        """Stop handing out frames; return the frame that was still waiting, if any."""
        with self._cond:
            self._closed = True
            frame, self._pending = self._pending, None
            self._cond.notify_all()
            return frame

    @property
    def closed(self) -> bool:
        return self._closed


class FrameDispatcher:
    """Runs frame callbacks on one worker thread so a slow callback never blocks the comm handler.

    ``done(frame, processed, timing)`` is called once per submitted frame: after its callbacks ran
    (``processed=True``, with a ``FrameTiming``) or when it was dropped for a newer one or could not be
    decoded (``False``, ``None``). ``decode`` turns the bytes into what callbacks get, raising one of
    ``refused`` for bytes it will not take.
    """

    def __init__(self, done: Callable[[PendingFrame, bool, FrameTiming | None], None],
                 decode: Callable[[bytes], object] = decode_image,
                 refused: tuple[type[Exception], ...] = (FrameDecodeError,)) -> None:
        self._done = done
        self._decode = decode
        self._refused = refused
        self._slot = LatestFrame()
        self._callbacks: list[FrameCallback] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Frames (a batch counts its faces), except "messages" (what arrived) and "bad" (messages refused).
        self.counts = {"received": 0, "processed": 0, "dropped": 0, "bad": 0, "refused": 0, "errors": 0, "bytes": 0,
                       "messages": 0}
        self.last_error = ""

    def add(self, callback: FrameCallback) -> None:
        if not callable(callback):
            raise TypeError(f"on_frame needs a function f(frame, t), got {type(callback).__name__}")
        with self._lock:
            if callback not in self._callbacks:
                self._callbacks.append(callback)

    def remove(self, callback: FrameCallback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def submit(self, frame: PendingFrame) -> None:
        if self._slot.closed:
            return
        self.counts["messages"] += 1
        self.counts["received"] += frame.count
        self.counts["bytes"] += frame.size
        self._ensure_worker()
        dropped = self._slot.offer(frame)
        if dropped is not None:
            self.counts["dropped"] += dropped.count
            self._done(dropped, False, None)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="smartsession-frames", daemon=True)
                self._thread.start()

    def run_now(self, frame: PendingFrame) -> None:
        """Decode ``frame`` and run the callbacks on it in the calling thread, now: for work that costs a few
        milliseconds (a batch of packed faces), so it is done when the message handler returns and the kernel's
        "idle" for the message tells the page so. The page bounds what waits (its messages in flight)."""
        if self._slot.closed:
            return
        self.counts["messages"] += 1
        self.counts["received"] += frame.count
        self.counts["bytes"] += frame.size
        self._process(frame, time.time())

    def _run(self) -> None:
        while (frame := self._slot.take()) is not None:
            self._process(frame, time.time())

    def _process(self, frame: PendingFrame, taken: float) -> None:
        try:
            rgb = self._decode(frame.data)
        except self._refused as err:
            self.counts["bad"] += 1
            self.last_error = str(err)
            self._done(frame, False, None)
            return
        decoded = time.time()
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(rgb, frame.t)
            except Exception:  # a faulty callback must not stop the camera for the others
                self.counts["errors"] += 1
                self.last_error = traceback.format_exc(limit=3)
                log.exception("frame callback %r failed", callback)
        self.counts["processed"] += frame.count
        done = time.time()
        self._done(frame, True, FrameTiming(taken - frame.received, decoded - taken, done - decoded))

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker (waits up to ``timeout`` s for the running callback); closing twice is harmless."""
        self._slot.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
