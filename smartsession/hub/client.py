"""Client side of the hub for kernels and scripts: a student publisher, a teacher subscriber, class helpers.

Both clients run on the caller's asyncio loop (a Jupyter kernel's included), reconnect with capped
exponential backoff and jitter, and default to ``SMARTSESSION_HUB_URL`` / ``SMARTSESSION_HUB_CAFILE``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import quote
from collections import deque
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

from smartsession.hub.protocol import CloseCode
from smartsession.hub.room import ClassRoom
from smartsession.schema import (
    MAX_BATCH_STATES,
    PROTOCOL_VERSION,
    CheckinAnswer,
    CheckinAsk,
    Snapshot,
    StateBatch,
    StateMessage,
    TeacherCommand,
)

log = logging.getLogger("smartsession.hub.client")

#: Closes after which reconnecting cannot help: the token is wrong, or another tab took over.
FATAL = {CloseCode.AUTH_FAILED, CloseCode.FORBIDDEN, CloseCode.REPLACED}
#: Closes caused by what we sent: drop what is queued rather than resend it forever.
POISON = {CloseCode.BAD_JSON, CloseCode.BAD_MESSAGE, CloseCode.UNKNOWN_TYPE, CloseCode.TOO_BIG}


class HubError(RuntimeError):
    """The hub refused us for good, or could not be reached; the message says what to do."""


def hub_url(url: str | None = None) -> str:
    url = url or os.environ.get("SMARTSESSION_HUB_URL", "")
    if not url:
        raise HubError("no hub URL: pass url= or set SMARTSESSION_HUB_URL (e.g. http://127.0.0.1:8866)")
    return url.rstrip("/")


def ssl_context(url: str, cafile: str | None = None) -> ssl.SSLContext | None:
    if not url.startswith(("https:", "wss:")):
        return None
    cafile = cafile or os.environ.get("SMARTSESSION_HUB_CAFILE") or None
    return ssl.create_default_context(cafile=cafile)


def _ws_url(url: str, path: str) -> str:
    return "ws" + url[len("http"):] + path if url.startswith("http") else url + path


def _call(url: str, path: str, body: dict | None = None, token: str | None = None, cafile: str | None = None,
          timeout: float = 30) -> dict:
    """One HTTP API call: POST ``body`` (GET without one); the hub's refusal becomes a ``HubError``."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context(url, cafile)) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except Exception:
            message = exc.reason
        raise HubError(f"{path}: {exc.code} {message}") from None
    except urllib.error.URLError as exc:
        raise HubError(f"cannot reach the hub at {url}: is `smartsession serve` running? ({exc.reason})") from None


def create_class(url: str | None, title: str, token: str, cafile: str | None = None) -> dict:
    """Create a class with the server's admin token or a teacher token; returns ids, tokens and links."""
    return _call(hub_url(url), "/smartsession/api/classes", {"title": title}, token, cafile)


def rotate_teacher_token(url: str | None, class_id: str, admin_token: str, cafile: str | None = None) -> dict:
    """Revoke the class's teacher tokens (admin token only); returns its links with the new teacher token."""
    return _call(hub_url(url), f"/smartsession/api/classes/{quote(class_id, safe='')}/rotate-token", {},
                 admin_token, cafile)


def join_class(url: str | None, class_id: str, join_code: str, name: str, cafile: str | None = None,
               seat: str = "") -> dict:
    """Join with the teacher's join code; returns ``student_id`` and ``token`` for :class:`StudentPublisher`.

    ``seat``: the seat token ``smartsession serve`` gave this page's kernel; a reloaded page joins with it as the
    student it was (docs/PROTOCOL.md). ``?class=`` lets a load balancer send the join to the class's node
    (docs/DEPLOY.md), the node the student then connects to: that node knows the student is new, which opens
    the next lesson after an ended one."""
    body = {"class_id": class_id, "join_code": join_code, "name": name, **({"seat": seat} if seat else {})}
    return _call(hub_url(url), f"/smartsession/api/join?class={quote(class_id, safe='')}", body, None, cafile)


def fetch_session(url: str | None, session_id: str, token: str, cafile: str | None = None) -> dict:
    """A session's JSON export (states, segments, students), with its class's teacher token."""
    return _call(hub_url(url), f"/smartsession/api/sessions/{quote(session_id, safe='')}/export.json", None, token,
                 cafile, timeout=60)


def fetch_plan(url: str | None, class_id: str, token: str, cafile: str | None = None) -> list[str]:
    """The class's stored lesson plan (its items)."""
    return _call(hub_url(url), f"/smartsession/api/classes/{quote(class_id, safe='')}/plan", None, token,
                 cafile)["items"]


def save_plan(url: str | None, class_id: str, text: str, token: str, cafile: str | None = None) -> list[str]:
    """Store ``text`` (an outline) as the class's lesson plan; returns its items, as the hub parsed them."""
    return _call(hub_url(url), f"/smartsession/api/classes/{quote(class_id, safe='')}/plan", {"text": text},
                 token, cafile)["items"]


def fetch_lessons(url: str | None, class_id: str, token: str, cafile: str | None = None) -> list[dict]:
    """The class's past lessons, summarised (date, duration, students, engagement, biggest drop, answers)."""
    return _call(hub_url(url), f"/smartsession/api/classes/{quote(class_id, safe='')}/lessons", None, token,
                 cafile, timeout=60)


def fetch_history(url: str | None, session_id: str, token: str, cafile: str | None = None) -> dict:
    """A session so far at one point per second (class series, each student's, segments), for a late page."""
    return _call(hub_url(url), f"/smartsession/api/sessions/{quote(session_id, safe='')}/history", None, token,
                 cafile, timeout=60)


def send_soon(ws, text: str, pending: set[asyncio.Task]) -> None:
    """Send ``text`` on the websocket ``ws`` from the running loop without waiting for it. ``pending`` keeps the
    task until it is done (the loop holds tasks weakly: it could vanish mid-send). A failed send is dropped: the
    connection's own loop sees the loss."""
    task = asyncio.ensure_future(_send_quietly(ws, text))
    pending.add(task)
    task.add_done_callback(pending.discard)


async def _send_quietly(ws, text: str) -> None:
    try:
        await ws.send(text)
    except Exception:
        pass


class _Client:
    """Connection loop shared by both clients: hello, then messages, reconnect on loss."""

    path = ""

    def __init__(self, token: str, url: str | None, cafile: str | None, backoff: tuple[float, float]):
        self.url = hub_url(url)
        self.token = token
        self.cafile = cafile
        self.backoff = backoff
        self.error: HubError | None = None
        self.connected = asyncio.Event()
        self._ws = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def wait_connected(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def _run(self) -> None:
        import websockets

        delay = self.backoff[0]
        target = _ws_url(self.url, self.path)
        while not self._stopping:
            try:
                async with websockets.connect(
                    target, ssl=ssl_context(self.url, self.cafile), open_timeout=10, max_size=2**22,
                    ping_interval=5, ping_timeout=10,
                ) as ws:
                    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": self.token}))
                    self._ws = ws
                    first = True
                    async for raw in ws:
                        msg = json.loads(raw)
                        if first:
                            first = False
                            delay = self.backoff[0]
                            await self._on_open(ws, msg)
                            self.connected.set()
                        else:
                            self._on_message(msg)
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else ""
                if code in FATAL:
                    self.error = HubError(f"hub refused this client ({code}): {reason}")
                    log.warning("%s", self.error)
                    self._stopping = True
                elif code in POISON:
                    log.warning("hub refused a message (%s %s): dropping queued messages", code, reason)
                    self._on_poison()
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
                log.info("hub at %s unreachable (%s): retrying in %.1f s", self.url, exc, delay)
            except Exception:
                log.exception("unexpected error talking to the hub at %s: reconnecting", self.url)
            finally:
                self._ws = None
                self.connected.clear()
            if self._stopping:
                break
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff[1])

    async def _on_open(self, ws, msg: dict) -> None:
        raise NotImplementedError

    def _on_message(self, msg: dict) -> None:
        raise NotImplementedError

    def _on_poison(self) -> None:
        pass


class StudentPublisher(_Client):
    """Publishes a student's states; keeps the unacknowledged ones (at most ``outbox_size``, latest win).

    ``publish_batch(msgs)`` sends a batch of states (a frame's each) as one ``states`` message; ``publish(msg)``
    one state as a ``state`` message. Both stamp the seq (milliseconds since the epoch, strictly increasing, so a restarted
    kernel never replays) and the current segment; ``on_class(status)`` is called with the class status
    (session, segment, whether emotions are on) on connect and whenever the teacher changes it.
    """

    def __init__(
        self,
        class_id: str,
        student_id: str,
        token: str,
        url: str | None = None,
        cafile: str | None = None,
        outbox_size: int = MAX_BATCH_STATES,
        on_class: Callable[[dict], Any] | None = None,
        backoff: tuple[float, float] = (0.5, 15.0),
        on_checkin: Callable[[dict], Any] | None = None,
    ):
        super().__init__(token, url, cafile, backoff)
        self.on_checkin = on_checkin
        self.class_id, self.student_id = class_id, student_id
        self.path = f"/smartsession/ws/student/{class_id}/{student_id}"
        self.on_class = on_class
        self.outbox: deque[StateMessage] = deque(maxlen=outbox_size)
        self.status: dict[str, Any] = {}
        self.acked_seq = -1
        self.seq = -1
        self._sending: set[asyncio.Task] = set()

    @classmethod
    async def join(cls, url: str | None, class_id: str, join_code: str, name: str, seat: str = "",
                   **kwargs) -> "StudentPublisher":
        """Join the class over HTTP (off the loop) and return a publisher for the student (not started); with
        ``seat`` (see :func:`join_class`) as the student that seat keeps."""
        cafile = kwargs.get("cafile")
        info = await asyncio.get_running_loop().run_in_executor(
            None, join_class, url, class_id, join_code, name, cafile, seat
        )
        return cls(class_id, info["student_id"], info["token"], url=url, **kwargs)

    @property
    def segment(self) -> str | None:
        seg = self.status.get("segment")
        return seg["segment_id"] if seg else None

    @property
    def emotions(self) -> bool:
        return self.status.get("emotions", True)

    def publish(self, msg: StateMessage) -> StateMessage:
        """Queue ``msg`` (class/student ids, seq and segment are filled in); send it now if connected."""
        self.seq = max(self.seq + 1, int(time.time() * 1000))
        msg = replace(
            msg, class_id=self.class_id, student_id=self.student_id, seq=self.seq,
            segment=msg.segment or self.segment,
        )
        self.outbox.append(msg)
        self._send(msg)
        return msg

    def publish_batch(self, msgs: list[StateMessage]) -> list[StateMessage]:
        """Queue ``msgs`` (in capture order; stamped as by :meth:`publish`) and send them as one message."""
        stamped = []
        for msg in msgs[-MAX_BATCH_STATES:]:
            self.seq = max(self.seq + 1, int(time.time() * 1000))
            stamped.append(replace(msg, class_id=self.class_id, student_id=self.student_id, seq=self.seq,
                                   segment=msg.segment or self.segment))
        self.outbox.extend(stamped)
        if stamped:
            self._send_batch(stamped)
        return stamped

    def _send(self, msg: StateMessage) -> None:
        self._send_text(json.dumps(msg.to_dict(), separators=(",", ":")))

    def _send_batch(self, msgs: list[StateMessage]) -> None:
        self._send_text(self._batch_text(msgs))

    def _batch_text(self, msgs: list[StateMessage]) -> str:
        batch = StateBatch(class_id=self.class_id, student_id=self.student_id, states=tuple(msgs))
        return json.dumps(batch.to_dict(), separators=(",", ":"))

    def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is not None and self.connected.is_set():
            send_soon(ws, text, self._sending)  # the run loop sees a loss and resends what is unacknowledged

    async def wait_acked(self, seq: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.acked_seq < seq:
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"seq {seq} not acknowledged within {timeout} s")
            await asyncio.sleep(0.02)

    async def _on_open(self, ws, msg: dict) -> None:
        if msg.get("type") != "welcome":
            raise HubError(f"expected welcome, got {msg.get('type')}")
        last = msg["last_seq"]
        self._ack(last)
        self.seq = max(self.seq, last)
        self._status(msg)
        if msg.get("checkin") and self.on_checkin is not None:
            self.on_checkin({**msg["checkin"], "type": "checkin"})
        # Resend what is unacknowledged, including states published while we were resending: one batch holds
        # the whole outbox.
        sent_upto = last
        while pending := [m for m in self.outbox if m.seq > sent_upto][:MAX_BATCH_STATES]:
            await ws.send(self._batch_text(pending))
            sent_upto = pending[-1].seq

    def _ack(self, seq: int) -> None:
        self.acked_seq = max(self.acked_seq, seq)
        while self.outbox and self.outbox[0].seq <= self.acked_seq:
            self.outbox.popleft()

    def _status(self, msg: dict) -> None:
        self.status = {k: msg[k] for k in ("session_id", "segment", "emotions", "title", "ended") if k in msg}
        if self.on_class is not None:
            self.on_class(dict(self.status))

    def _on_message(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "ack":
            self._ack(msg["seq"])
        elif kind == "nack":
            # The hub holds this seq already (a resend after reconnect), or will not keep it (an unknown segment,
            # a session the teacher ended): nothing to resend.
            self.outbox = deque((m for m in self.outbox if m.seq != msg["seq"]), maxlen=self.outbox.maxlen)
        elif kind == "class":
            self._status(msg)
        elif kind in ("checkin", "checkin_closed", "answer_ok", "answer_refused") and self.on_checkin is not None:
            self.on_checkin(msg)

    def answer(self, checkin_id: str, option: int, research: bool = False) -> bool:
        """Send the answer (the index of the option picked) to a check-in; False when not connected (an answer
        is not kept for later: the check-in may be closed by then). The hub replies ``answer_ok`` or
        ``answer_refused`` through ``on_checkin``."""
        msg = CheckinAnswer(checkin_id, option, research)
        ws = self._ws
        if ws is None or not self.connected.is_set():
            return False
        send_soon(ws, json.dumps(msg.to_dict(), separators=(",", ":")), self._sending)
        return True

    def _on_poison(self) -> None:
        self.outbox.clear()


class TeacherSubscriber(_Client):
    """Watches a class: ``snapshot`` on connect (again after each reconnect), then every event.

    ``room`` (a ``ClassRoom``) is kept current; ``on_snapshot(Snapshot)`` and ``on_event(dict)`` are
    called as they arrive, and ``async for event in subscriber`` yields them too.
    """

    def __init__(
        self,
        class_id: str,
        token: str,
        url: str | None = None,
        cafile: str | None = None,
        on_snapshot: Callable[[Snapshot], Any] | None = None,
        on_event: Callable[[dict], Any] | None = None,
        backoff: tuple[float, float] = (0.5, 15.0),
        queue_size: int = 10000,
    ):
        super().__init__(token, url, cafile, backoff)
        self.class_id = class_id
        self.path = f"/smartsession/ws/teacher/{class_id}"
        self.on_snapshot, self.on_event = on_snapshot, on_event
        self.room = ClassRoom(class_id)
        self.snapshot: Snapshot | None = None
        self._ids = itertools.count(1)
        self._results: dict[int, asyncio.Future] = {}
        self._queue: asyncio.Queue = asyncio.Queue(queue_size)

    async def _on_open(self, ws, msg: dict) -> None:
        if msg.get("type") != "snapshot":
            raise HubError(f"expected snapshot, got {msg.get('type')}")
        self.snapshot = Snapshot.from_dict(msg)
        self.room = ClassRoom(
            self.class_id, self.snapshot.title, self.snapshot.session_id, self.snapshot.segment,
            self.snapshot.emotions, {s.student_id: s for s in self.snapshot.students},
        )
        if self.on_snapshot is not None:
            self.on_snapshot(self.snapshot)
        self._offer(msg)

    def _offer(self, msg: dict) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # nobody is iterating: keep the newest
        self._queue.put_nowait(msg)

    def _on_message(self, msg: dict) -> None:
        if msg.get("type") == "batch":
            for event in msg["events"]:
                self._on_message(event)
            return
        if msg.get("type") == "result":
            fut = self._results.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        self.room.apply(msg)
        if self.on_event is not None:
            self.on_event(msg)
        self._offer(msg)

    async def __aiter__(self) -> AsyncIterator[dict]:
        while True:
            yield await self._queue.get()

    async def wait_snapshot(self, timeout: float = 10) -> Snapshot:
        await self.wait_connected(timeout)
        return self.snapshot

    async def ask(self, kind: str, question: str | None = None, options: list[str] | None = None,
                  seconds: float = 60.0, research: bool = False, timeout: float = 10) -> dict:
        """Send a check-in (a preset ``kind`` or ``custom`` with question and options); the hub's ``result``."""
        msg: dict[str, Any] = {"type": "ask", "v": PROTOCOL_VERSION, "id": next(self._ids), "kind": kind,
                               "seconds": seconds, "research": research}
        if kind == "custom":
            msg.update(question=question, options=options)
        CheckinAsk.from_dict(msg)  # refuse here what the hub would refuse, with the same words
        await self.wait_connected(timeout)
        fut = asyncio.get_running_loop().create_future()
        self._results[msg["id"]] = fut
        await self._ws.send(json.dumps(msg))
        result = await asyncio.wait_for(fut, timeout)
        if not result.get("ok"):
            raise HubError(f"check-in refused: {result.get('error')}")
        return result

    async def send_command(self, command: str, timeout: float = 10, **args: Any) -> dict:
        """Send a teacher command (see ``TEACHER_COMMANDS``) and return the hub's ``result``."""
        cmd = TeacherCommand.from_dict({"type": "command", "v": PROTOCOL_VERSION, "command": command,
                                        "id": next(self._ids), **args})
        await self.wait_connected(timeout)
        fut = asyncio.get_running_loop().create_future()
        self._results[cmd.id] = fut
        await self._ws.send(json.dumps(cmd.to_dict()))
        result = await asyncio.wait_for(fut, timeout)
        if not result.get("ok"):
            raise HubError(f"{command} refused: {result.get('error')}")
        return result
