"""A student page without a browser, for capacity benchmarks: it speaks to the page's kernel as the page's JavaScript does.

Jupyter's kernel websocket (``/api/kernels/<id>/channels``), ipywidgets' comm messages (``comm_info_request``,
``request_state``, ``update`` and ``custom``), and the camera widget's frames as binary buffers with its
back-pressure (at most ``max_in_flight`` messages awaiting an ack, ticks beyond skipped), one message a frame or,
as the page does in browser analysis, packed faces gathered into one message every ``batch_seconds``. It counts
every kernel message it sends and receives, which is what a student costs the server and the kernel. The message building and
reading are pure functions; :class:`PageClient` is the thin asyncio shell around them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1, serialize_msg_to_ws_v1

from smartsession.vision.packed import BATCH_PREFIX

#: The kernel websocket protocol JupyterLab's services (and so Voila's page) speak. With the legacy protocol the
#: server dropped kernel messages that carry buffers, and every message after them on that socket.
SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
#: What the camera widget's JavaScript uses: an unacknowledged frame older than this no longer holds a slot.
STALE_S = 5.0

#: ``frame_message(seq, t)`` -> (comm content, buffers) of one frame the page would send at capture time ``t``.
FrameMessage = Callable[[int, float], "tuple[dict, Sequence[bytes]]"]


class PageError(RuntimeError):
    """The page's kernel did not behave like a student page (no camera widget, no consent button, no acks)."""


# --- the wire (pure) ---


def message(msg_type: str, content: dict, session: str, *, channel: str = "shell", buffers=(), metadata=None) -> dict:
    """A Jupyter message as the kernel websocket carries it (``channel`` says which kernel socket)."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "student",
            "session": session,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": metadata or {},
        "content": content,
        "channel": channel,
        "buffers": list(buffers),
    }


def encode(msg: dict) -> bytes:
    """Jupyter's v1 kernel websocket framing: offsets, the channel, four JSON parts, then the buffers."""
    parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
    return serialize_msg_to_ws_v1([*parts, *map(bytes, msg.get("buffers") or ())], msg["channel"])


def decode(data: bytes) -> dict:
    """A message from the kernel websocket (v1 framing), its buffers under ``"buffers"``."""
    if not isinstance(data, bytes):
        raise ValueError("the v1 kernel websocket protocol sends binary messages only")
    channel, parts = deserialize_msg_from_ws_v1(data)
    if len(parts) < 4:
        raise ValueError(f"a kernel message has at least 4 parts, this one {len(parts)}")
    header, parent, metadata, content = (json.loads(p) for p in parts[:4])
    return {"channel": channel, "header": header, "msg_type": header.get("msg_type"), "parent_header": parent,
            "metadata": metadata, "content": content, "buffers": parts[4:]}


def comm_msg(comm_id: str, data: dict, session: str, buffers=()) -> dict:
    return message("comm_msg", {"comm_id": comm_id, "data": data}, session, buffers=buffers)


def frame_content(seq: int, t: float, width: int = 640, height: int = 480) -> dict:
    """What camera.js sends with each JPEG: its number, capture time (unix s) and size."""
    return {"type": "frame", "seq": seq, "t": t, "width": width, "height": height}


def jpeg_frames(jpegs: Sequence[bytes], width: int = 640, height: int = 480) -> FrameMessage:
    """Server mode: the page sends JPEGs, here replayed in a loop."""
    if not jpegs:
        raise ValueError("jpeg_frames needs at least one JPEG")
    return lambda seq, t: (frame_content(seq, t, width, height), [jpegs[seq % len(jpegs)]])


@dataclass(frozen=True)
class PageWidgets:
    """The widgets of a student page a student touches: its camera, the name field and the consent button."""

    camera: str
    name_field: str
    agree_button: str
    max_in_flight: int
    batch_seconds: float = 0.0  # the camera's setting: faces gathered this long per message (0: one a message)
    max_batch: int = 1

    @classmethod
    def from_states(cls, states: dict[str, dict]) -> "PageWidgets":
        """Find them in ``update_states`` content (model id -> {model_name, state}) by what the page shows."""
        camera = name = agree = None
        max_in_flight, batch_seconds, max_batch = 2, 0.0, 1
        for model_id, entry in states.items():
            state = entry.get("state", {})
            if "max_in_flight" in state and "fps" in state:
                camera, max_in_flight = model_id, int(state["max_in_flight"])
                batch_seconds, max_batch = float(state.get("batch_seconds", 0.0)), int(state.get("max_batch", 1))
            elif state.get("placeholder") == "as your teacher will see it":
                name = model_id
            elif state.get("_model_name") == "ButtonModel" and str(state.get("description", "")).startswith("I agree"):
                agree = model_id  # the consent button; the research-use checkbox's label starts the same way
        missing = [what for what, found in (("camera", camera), ("name field", name), ("consent button", agree))
                   if found is None]
        if missing:
            raise PageError(f"not a student page: no {', '.join(missing)} among its {len(states)} widgets")
        return cls(camera, name, agree, max_in_flight, batch_seconds, max_batch)


@dataclass
class FrameLog:
    """What the page's camera would count: frames sent, skipped (too many awaiting an ack), and each ack."""

    sent: int = 0
    skipped: int = 0
    processed: int = 0
    dropped: int = 0  # acked processed=False: the kernel kept a newer frame
    roundtrips: list[float] = field(default_factory=list)  # seconds from capture to the processed ack
    kernel_ms: list[dict] = field(default_factory=list)
    messages_sent: int = 0  # kernel messages of any kind, both directions, since the last reset
    messages_received: int = 0
    pipe_sent: int = 0  # of those, through serve's face pipe (batches up, acks down)
    pipe_received: int = 0
    # Seconds from the kernel's send to the arrival here: of the pipe's acks (their "at"), and of the widget updates
    # (redraws) on the Jupyter socket (their header's date): with the pipe a batch's ack and its redraw travel apart.
    ack_delivery: list[float] = field(default_factory=list)
    redraw_delivery: list[float] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)  # "up faces", "down status idle", ...: what those messages are
    since: float = field(default_factory=time.monotonic)

    def reset(self) -> None:
        self.sent = self.skipped = self.processed = self.dropped = 0
        self.messages_sent = self.messages_received = self.pipe_sent = self.pipe_received = 0
        self.ack_delivery.clear()
        self.redraw_delivery.clear()
        self.kinds.clear()
        self.since = time.monotonic()
        self.roundtrips.clear()
        self.kernel_ms.clear()

    @property
    def ticks(self) -> int:
        return self.sent + self.skipped

    @property
    def lost(self) -> int:
        """Frames that never got analysed: skipped before sending or dropped by the kernel."""
        return self.skipped + self.dropped


def kind_of(msg: dict) -> str:
    """What a kernel message is, for counting: its type, a status's state, a comm message's method and, for a
    custom message, its content's type, for an update the traits it sets."""
    msg_type = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
    content = msg.get("content", {})
    if msg_type == "status":
        return f"status {content.get('execution_state')}"
    if msg_type != "comm_msg":
        return str(msg_type)
    data = content.get("data", {})
    method = data.get("method")
    if method == "custom":
        inner = data.get("content")
        return f"custom {inner.get('type') if isinstance(inner, dict) else '?'}"
    if method == "update":
        return "update " + ",".join(sorted(data.get("state", {})))
    return f"comm {method}"


def ack_of(msg: dict, camera: str) -> dict | None:
    """The camera's frame ack in a kernel message, or None."""
    if msg.get("msg_type", msg.get("header", {}).get("msg_type")) != "comm_msg":
        return None
    content = msg.get("content", {})
    data = content.get("data", {})
    if content.get("comm_id") != camera or data.get("method") != "custom":
        return None
    ack = data.get("content")
    return ack if isinstance(ack, dict) and ack.get("type") == "ack" else None


def _timestamp(iso: str) -> float:
    """Unix seconds of a Jupyter message header's date (ISO 8601, UTC)."""
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- the shell (asyncio) ---


class PageClient:
    """One student's page: ``async with PageClient(ws_url) as page: await page.consent(name); await page.stream(...)``."""

    def __init__(self, channels_url: str, *, open_timeout: float = 60.0) -> None:
        self.url = channels_url
        self.open_timeout = open_timeout
        self.session = uuid.uuid4().hex
        self.widgets: PageWidgets | None = None
        self.frames = FrameLog()
        self.camera_active = asyncio.Event()
        self.closed = asyncio.Event()
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._comms: asyncio.Future | None = None
        self._states: dict[str, asyncio.Future] = {}  # comm id -> its state, while the page loads
        self._in_flight: dict[int, list[float]] = {}  # seq -> capture times of the frames it carries
        self._idle: dict[str, asyncio.Future] = {}  # msg_id -> set once the kernel has handled that message
        self._batches: dict[str, int] = {}  # msg_id -> seq of a faces message: its "idle" status is its ack
        self.pipe_offer: dict = {}  # the camera's `pipe` trait: where the page sends batches past Jupyter
        self._pipe: Any = None  # the open pipe (after its welcome)
        self._pipe_token = ""
        self._pipe_task: asyncio.Task | None = None

    @classmethod
    def for_kernel(cls, server_url: str, kernel_id: str, **kwargs) -> "PageClient":
        base = server_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
        return cls(f"{base}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}", **kwargs)

    async def __aenter__(self) -> "PageClient":
        from websockets.asyncio.client import connect

        self._ws = await connect(self.url, open_timeout=self.open_timeout, max_size=None, compression=None,
                                 subprotocols=[SUBPROTOCOL])
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._pipe_task is not None:
            self._pipe_task.cancel()
            await asyncio.gather(self._pipe_task, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self.closed.set()

    async def send(self, msg: dict) -> None:
        await self._ws.send(encode(msg))
        self.frames.messages_sent += 1
        self.frames.kinds["up " + kind_of(msg)] += 1

    async def handled(self, msg: dict, timeout: float = 30.0) -> None:
        """Send ``msg`` and wait until the kernel has handled it (its ``idle`` status).

        ipykernel 7 may handle a message before the one sent ahead of it (a comm's first message before its
        ``comm_open``; a click before the name typed), so steps that depend on each other wait for this.
        """
        done = self._idle[msg["header"]["msg_id"]] = asyncio.get_running_loop().create_future()
        try:
            await self.send(msg)
            await asyncio.wait_for(done, timeout)
        finally:
            self._idle.pop(msg["header"]["msg_id"], None)

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                now = time.time()
                self.frames.messages_received += 1
                msg = decode(data)
                kind = kind_of(msg)
                self.frames.kinds["down " + kind] += 1
                if kind.startswith("update value") and self._pipe is not None:
                    sent = msg.get("header", {}).get("date")
                    if isinstance(sent, str):
                        self.frames.redraw_delivery.append(now - _timestamp(sent))
                self._on_message(msg, now)
        finally:
            self.closed.set()

    def _on_message(self, msg: dict, now: float) -> None:
        msg_type = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content", {})
        if msg_type == "status" and content.get("execution_state") == "idle":
            parent = msg.get("parent_header", {}).get("msg_id")
            done = self._idle.get(parent)
            if done is not None and not done.done():
                done.set_result(None)
            seq = self._batches.pop(parent, None)
            if seq is not None:  # a batch is analysed in its handler: done (unless an ack refused it first)
                self._acked({"type": "ack", "seq": seq, "processed": True}, now)
        elif msg_type == "comm_info_reply" and self._comms is not None and not self._comms.done():
            self._comms.set_result(list(content.get("comms", {})))
        elif msg_type == "comm_msg":
            data = content.get("data", {})
            waiting = self._states.get(content.get("comm_id"))
            if data.get("method") == "update" and waiting is not None and not waiting.done():
                waiting.set_result(data.get("state", {}))
                return
            if self.widgets is None or content.get("comm_id") != self.widgets.camera:
                return
            if data.get("method") == "update" and "pipe" in data.get("state", {}):
                self.follow_pipe(data["state"]["pipe"])
            if data.get("method") == "update" and data.get("state", {}).get("active"):
                self.camera_active.set()
            elif (ack := ack_of(msg, self.widgets.camera)) is not None:
                self._acked(ack, now)

    # --- serve's face pipe, as camera.js's FacePipe ---

    @property
    def piped(self) -> bool:
        """Whether batches go through serve's face pipe now (it is open and welcomed us)."""
        return self._pipe is not None

    def follow_pipe(self, offer: Any) -> None:
        """Open the pipe the kernel offers (the camera's `pipe` trait), once per token, as camera.js does."""
        self.pipe_offer = offer if isinstance(offer, dict) else {}
        token = self.pipe_offer.get("token", "")
        if token == self._pipe_token:
            return
        self._pipe_token = token
        if self._pipe_task is not None:
            self._pipe_task.cancel()
        self._pipe = self._pipe_task = None
        if token and self.pipe_offer.get("path"):
            self._pipe_task = asyncio.ensure_future(self._run_pipe(self.pipe_offer["path"], token))

    async def _run_pipe(self, path: str, token: str) -> None:
        from urllib.parse import urlsplit

        from websockets.asyncio.client import connect

        parts = urlsplit(self.url)
        url = f"{parts.scheme}://{parts.netloc}{path}"
        try:
            async with connect(url, open_timeout=self.open_timeout, max_size=2**20, compression=None) as ws:
                await ws.send(json.dumps({"type": "hello", "token": token}))
                async for data in ws:
                    now = time.time()
                    msg = json.loads(data)
                    if msg.get("type") == "welcome":
                        self._pipe = ws
                    elif msg.get("type") == "ack":
                        self.frames.messages_received += 1
                        self.frames.pipe_received += 1
                        self.frames.kinds["down pipe ack"] += 1
                        if isinstance(msg.get("at"), (int, float)):
                            self.frames.ack_delivery.append(now - msg["at"])
                        self._acked(msg, now)
        except Exception:
            pass  # closed or refused: batches go over the comm, as the page's do
        finally:
            if self._pipe_token == token:
                self._pipe = None

    async def _send_piped(self, seq: int, header: dict, faces: list[bytes]) -> bool:
        ws = self._pipe
        if ws is None:
            return False
        head = json.dumps(header).encode()
        try:
            await ws.send(b"".join([BATCH_PREFIX.pack(seq, len(head)), head, *faces]))
        except Exception:
            return False
        self.frames.messages_sent += 1
        self.frames.pipe_sent += 1
        self.frames.kinds["up pipe faces"] += 1
        return True

    def _acked(self, ack: dict, now: float) -> None:
        captured = self._in_flight.pop(ack.get("seq"), None)
        if captured is None:
            return
        if ack.get("processed"):
            self.frames.processed += len(captured)
            self.frames.roundtrips += [now - t for t in captured]
            self.frames.kernel_ms.append(ack.get("kernel_ms", {}))
        else:
            self.frames.dropped += len(captured)

    async def find_widgets(self, timeout: float = 30.0) -> PageWidgets:
        """Ask the kernel for its widgets and each one's state, as the page's widget manager does when it loads.

        """
        loop = asyncio.get_running_loop()
        self._comms = loop.create_future()
        await self.send(message("comm_info_request", {"target_name": "jupyter.widget"}, self.session))
        comms = await asyncio.wait_for(self._comms, timeout)
        self._states = {comm_id: loop.create_future() for comm_id in comms}
        for comm_id in comms:
            await self.send(comm_msg(comm_id, {"method": "request_state"}, self.session))
        states = await asyncio.wait_for(asyncio.gather(*self._states.values()), timeout)
        self.widgets = PageWidgets.from_states({c: {"state": st} for c, st in zip(comms, states)})
        return self.widgets

    async def update(self, comm_id: str, state: dict, timeout: float = 30.0) -> None:
        """Set widget traits from the page (what ``model.set(...); model.save_changes()`` sends)."""
        await self.handled(comm_msg(comm_id, {"method": "update", "state": state, "buffer_paths": []}, self.session),
                           timeout)

    async def consent(self, name: str, analysis: str = "server", timeout: float = 60.0,
                      batch_seconds: float | None = None) -> None:
        """Say where faces are analysed (what camera.js reports once it knows: its landmarker loaded, or not;
        the consent button waits for it), type a name, press "I agree, start my camera", and wait for the
        kernel to switch the camera on. ``batch_seconds`` sets the camera's transport first (0: a message a
        face; None: the camera's default)."""
        widgets = self.widgets or await self.find_widgets()
        if batch_seconds is not None:
            await self.set_transport(batch_seconds, timeout)
        await self.update(widgets.camera, {"mode": analysis}, timeout)
        await self.update(widgets.name_field, {"value": name}, timeout)
        await self.send(comm_msg(widgets.agree_button, {"method": "custom", "content": {"event": "click"}},
                                 self.session))
        try:
            await asyncio.wait_for(self.camera_active.wait(), timeout)
        except asyncio.TimeoutError:
            raise PageError(f"the camera did not switch on within {timeout:.0f} s of consenting") from None

    async def set_transport(self, batch_seconds: float, timeout: float = 30.0) -> None:
        """Switch the camera's transport as its setting does: ``batch_seconds`` of faces a message, 0 a face each."""
        widgets = self.widgets or await self.find_widgets()
        await self.update(widgets.camera, {"batch_seconds": batch_seconds}, timeout)
        self.widgets = PageWidgets(widgets.camera, widgets.name_field, widgets.agree_button, widgets.max_in_flight,
                                   batch_seconds, widgets.max_batch)

    async def stream(self, frame_message: FrameMessage, fps: float, until: asyncio.Event) -> None:
        """Send frames at ``fps`` as the page's capture timer does, until ``until`` is set or the socket closes.

        With the camera's ``batch_seconds`` > 0, the frames' buffers (packed faces) gather and go as one ``faces``
        message once the oldest has waited that long and a slot is free, the newest ``max_batch`` of them,
        acknowledged by the kernel's "idle" for it; the page's counters ride on a batch every 5 s then (a widget
        update every second with a message a frame), as camera.js does.
        """
        widgets = self.widgets
        if widgets is None or not self.camera_active.is_set():
            raise PageError("consent first: the kernel ignores frames until the camera is on")
        period = 1.0 / fps
        # Only packed faces travel in batches (browser analysis); pictures go one a message whatever the setting.
        faces = frame_message(0, time.time())[0].get("type") == "face"
        seq = frame_no = 0
        gathered: list[tuple[float, bytes]] = []
        stats_due = time.monotonic() + 1.0
        next_tick = time.monotonic()
        while not until.is_set() and not self.closed.is_set():
            widgets = self.widgets
            now = time.time()
            for s, captured in list(self._in_flight.items()):
                if now - captured[0] > STALE_S:
                    del self._in_flight[s]
            free = len(self._in_flight) < widgets.max_in_flight
            if faces and widgets.batch_seconds > 0:
                frame_no += 1
                _content, buffers = frame_message(frame_no, now)
                gathered.append((now, buffers[0]))
                if len(gathered) > widgets.max_batch:
                    del gathered[0]
                    self.frames.skipped += 1
                if free and now - gathered[0][0] >= widgets.batch_seconds:
                    seq += 1
                    self._in_flight[seq] = [t for t, _ in gathered]
                    content = {"type": "faces", "seq": seq, "t": gathered[-1][0]}
                    if time.monotonic() >= stats_due:  # the page's counters ride on a batch
                        stats_due = time.monotonic() + 5.0
                        content["stats"] = {"sent": self.frames.sent, "skipped": self.frames.skipped,
                                            "processed": self.frames.processed}
                    faces_bytes = [b for _, b in gathered]
                    header = {"t": content["t"], "sizes": [len(b) for b in faces_bytes]}
                    if "stats" in content:
                        header["stats"] = content["stats"]
                    if not await self._send_piped(seq, header, faces_bytes):
                        batch = comm_msg(widgets.camera, {"method": "custom", "content": content}, self.session,
                                         faces_bytes)
                        self._batches[batch["header"]["msg_id"]] = seq
                        while len(self._batches) > 64:  # idles lost with a restarted kernel: forget the oldest
                            del self._batches[next(iter(self._batches))]
                        await self.send(batch)
                    self.frames.sent += len(gathered)
                    gathered = []
            elif not free:
                self.frames.skipped += 1
            else:
                seq += 1
                content, buffers = frame_message(seq, now)
                self._in_flight[seq] = [now]
                await self.send(comm_msg(widgets.camera, {"method": "custom", "content": content}, self.session,
                                         buffers))
                self.frames.sent += 1
            if time.monotonic() >= stats_due and not (faces and widgets.batch_seconds > 0):
                stats_due = time.monotonic() + 1.0
                stats = {"sent": self.frames.sent, "skipped": self.frames.skipped, "processed": self.frames.processed}
                await self.send(comm_msg(widgets.camera, {"method": "update", "state": {"stats": stats},
                                                          "buffer_paths": []}, self.session))
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay < -period:
                next_tick = time.monotonic()  # this process fell behind: tick on from now, never in a burst
            else:
                await asyncio.sleep(max(0.0, delay))
