"""The websocket hub inside tornado: students publish, teachers subscribe to their class, the store keeps it all.

``hub_handlers(hub)`` gives the routes for any tornado app (``smartsession serve``, ``smartsession hub``,
the Jupyter server extension); the handlers only move bytes, ``protocol`` decides what they mean.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from tornado import iostream, web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Int, List, Unicode, default
from traitlets.config import Configurable

from smartsession import __version__
from smartsession.hub import auth
from smartsession.hub.backplane import make_backplane
from smartsession.hub.httpserver import connection_cap
from smartsession.hub.protocol import (
    ClassRoom,
    CloseCode,
    Connection,
    ConnectionLimiter,
    Hello,
    HttpRefusal,
    JoinGate,
    JoinLimits,
    JsonError,
    Limits,
    QuietLog,
    RateBuckets,
    Refusal,
    Stale,
    TeacherSeats,
    dumps,
    parse_json,
)
from smartsession.hub.store import Store, private_dir, private_warnings
from smartsession.hub.wire import WebSocket, WebSocketRoute, keep
from smartsession.schema import PROTOCOL_VERSION, StateMessage, TeacherCommand, clean_title

log = logging.getLogger("smartsession.hub")

IDENT = r"[A-Za-z0-9._-]{1,64}"


class HubConfig(Configurable):
    """Hub settings, settable from the command line and Jupyter/Voila config files (``c.HubConfig.port``...)."""

    data_dir = Unicode(help="Directory for the SQLite store, the secret and the admin token.").tag(config=True)
    secret = Unicode("", help="HMAC secret for tokens; default: <data_dir>/secret, created on first run.").tag(
        config=True
    )
    redis_url = Unicode("", help="redis://host:port to share classes between hub processes; empty: one process.").tag(
        config=True
    )
    allowed_origins = List(
        Unicode(), help="Extra Origins allowed to open websockets (the page's own host is always allowed)."
    ).tag(config=True)
    max_message_bytes = Int(
        4096, help="Largest client message or API body; larger messages close the connection (4009), bodies get 413."
    ).tag(config=True)
    max_json_depth = Int(16, help="Deepest nesting of JSON arrays/objects accepted (4000 or 400 beyond).").tag(
        config=True
    )
    rate = Float(
        20.0, help="Messages per second per student (kept across reconnects), per connection before hello, "
        "and per class for its teachers' commands; sustained (4008 beyond)."
    ).tag(config=True)
    burst = Float(40.0, help="Messages allowed at once, for the same buckets as rate.").tag(config=True)
    class_rate = Float(600.0, help="Messages per second from all students of one class together (4008).").tag(
        config=True
    )
    class_burst = Float(1200.0, help="Messages at once from all students of one class together.").tag(config=True)
    max_clock_skew = Float(
        3600.0, help="Seconds a state's capture time t may be away from the hub's clock (4001 beyond)."
    ).tag(config=True)
    max_students_per_class = Int(500, help="Students a class may have; joins beyond get 503.").tag(config=True)
    join_rate_per_address = Float(1.0, help="Join attempts per second from one address, sustained (429).").tag(
        config=True
    )
    join_burst_per_address = Float(60.0, help="Join attempts at once from one address.").tag(config=True)
    join_rate_per_class = Float(1.0, help="Joins per second into one class, sustained (429).").tag(config=True)
    join_burst_per_class = Float(60.0, help="Joins at once into one class.").tag(config=True)
    max_teachers_per_token = Int(
        5, help="Teacher sockets with one token; a new one closes that token's oldest (4012)."
    ).tag(config=True)
    max_teachers_per_class = Int(20, help="Teacher sockets per class; more are refused (4014).").tag(config=True)
    max_connections = Int(
        4096, help="Open connections in all (HTTP and websocket), kept below the open-file limit (503)."
    ).tag(config=True)
    max_connections_per_address = Int(256, help="Open connections from one address (503).").tag(config=True)
    trusted_addresses = List(
        Unicode(), ["127.0.0.1", "::1", "::ffff:127.0.0.1"],
        help="Addresses exempt from the per-address caps (connections, joins): this machine's own kernels or proxy.",
    ).tag(config=True)
    max_write_buffer = Int(
        2 << 20, help="Bytes a client may leave unread before it is closed as too slow (4013)."
    ).tag(config=True)
    socket_send_buffer = Int(
        256 << 10, help="Kernel send buffer per websocket (SO_SNDBUF; 0: the system's autotuning, up to 4 MB)."
    ).tag(config=True)
    header_timeout = Float(
        10.0, help="Seconds for a request header to arrive (from connecting, or from the previous response)."
    ).tag(config=True)
    body_timeout = Float(10.0, help="Seconds for a request body to arrive.").tag(config=True)
    max_body_bytes = Int(1 << 20, help="Largest request body any route of the HTTP server reads.").tag(config=True)
    max_header_bytes = Int(65536, help="Largest request header.").tag(config=True)
    max_exports = Int(2, help="Session exports served at once; more wait their turn.").tag(config=True)
    ping_interval = Float(2.0, help="Seconds of silence after which a client is pinged.").tag(config=True)
    dead_after = Float(6.0, help="Seconds without pong or message before a client counts as disconnected.").tag(
        config=True
    )
    hello_timeout = Float(10.0, help="Seconds a new connection has to send its hello.").tag(config=True)
    commit_interval = Float(
        0.5, help="Seconds the store gathers rows before one commit; acks follow each commit."
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.environ.get("SMARTSESSION_DATA_DIR") or str(Path.home() / ".smartsession")


class AckPacer:
    """Sends each commit's acks a few dozen per loop turn, so states arriving meanwhile are not held up.

    One commit acknowledges every publishing student at once: a thousand frames in one callback held the
    hub's loop for 20-30 ms twice a second, and landed on the clients as one burst.
    """

    per_turn = 50
    pause = 0.002  # seconds between turns: 1000 acks spread over ~40 ms

    def __init__(self) -> None:
        self.queue: deque[tuple["StudentSocket", int]] = deque()
        self.running = False

    def add(self, acks: list[tuple["StudentSocket", int]]) -> None:
        # A student's states are committed in seq order (stale ones never reach the store), so the last
        # (socket, seq) pair per socket, which dict() keeps, is its highest: one ack per student per commit.
        self.queue.extend(dict(acks).items())
        if not self.running:
            self.running = True
            self._turn()

    def _turn(self) -> None:
        queue = self.queue
        for _ in range(min(self.per_turn, len(queue))):
            socket, seq = queue.popleft()
            socket.send('{"type":"ack","seq":%d}' % seq)
        if queue:
            asyncio.get_running_loop().call_later(self.pause, self._turn)
        else:
            self.running = False


class LoopLag:
    """How late the event loop runs a callback due every ``interval`` seconds: the last ``keep`` samples.

    What every client of this process waits on top of its own work; ``summary(window)`` gives p50/p99/max
    in ms over the last ``window`` seconds (``/smartsession/health``, ``benchmarks/hub.py``).
    """

    def __init__(self, interval: float = 0.01, keep: int = 6000):
        self.interval = interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.samples.append((now, max(0.0, now - self._due)))
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def summary(self, window: float = 10.0) -> dict[str, float | int]:
        if not self.samples:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0, "window_s": window}
        since = self.samples[-1][0] - window
        lags = sorted(lag for t, lag in self.samples if t >= since)
        pick = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 2)  # noqa: E731
        return {"p50": pick(0.5), "p99": pick(0.99), "max": round(lags[-1] * 1000, 2), "samples": len(lags),
                "window_s": window}


class Hub:
    """Owns the store, the backplane, the class rooms and every live connection.

    ``Hub(config)``, then ``await hub.start()`` inside the tornado loop, ``await hub.stop()`` at the end
    (or ``async with Hub(...)``). ``health_extras`` adds fields to ``/smartsession/health``.
    """

    def __init__(self, config: HubConfig | None = None, **settings: Any):
        self.config = config if config is not None else HubConfig(**settings)
        self.health_extras: dict[str, Callable[[], Any]] = {}
        self.rooms: dict[str, ClassRoom] = {}
        self.students: dict[tuple[str, str], StudentSocket] = {}
        self.teachers: dict[str, set[TeacherSocket]] = {}
        self.pending: set[_Socket] = set()
        self.store: Store | None = None
        self.secret = ""
        self.admin_token = ""
        self.started = False
        c = self.config
        self.limits = Limits(c.max_message_bytes, c.rate, c.burst, c.class_rate, c.class_burst, c.max_json_depth,
                             c.max_clock_skew)
        # One set of buckets for every limit keyed by who (student, class, address): reconnecting resets none.
        self.buckets = RateBuckets()
        self.joins = JoinGate(JoinLimits(c.join_rate_per_address, c.join_burst_per_address, c.join_rate_per_class,
                                         c.join_burst_per_class, c.max_students_per_class), self.buckets)
        self.seats = TeacherSeats(c.max_teachers_per_token, c.max_teachers_per_class)
        self.connections = ConnectionLimiter(c.max_connections, c.max_connections_per_address,
                                             set(c.trusted_addresses))
        self.quiet = QuietLog(log.info)  # client mistakes: one line each, at most 20 per 10 s
        self.class_sizes: dict[str, int] = {}
        self.lag = LoopLag()
        self._loading: dict[str, asyncio.Future] = {}
        self._exports: asyncio.Semaphore | None = None
        self._swept_buckets = 0.0
        self.backplane = make_backplane(c.redis_url)
        self.acks = AckPacer()

    async def __aenter__(self) -> "Hub":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.started:
            return
        data_dir = private_dir(Path(self.config.data_dir).expanduser())
        self.secret = self.config.secret or auth.load_secret(data_dir)
        self.admin_token = auth.load_admin_token(data_dir, self.secret)
        loop = asyncio.get_running_loop()
        self.store = Store(data_dir, batch_seconds=self.config.commit_interval,
                           on_acks=lambda acks: loop.call_soon_threadsafe(self.acks.add, acks))
        for warning in private_warnings(data_dir):
            log.warning("%s", warning)
        try:
            await self.backplane.start(self._on_remote_event)
        except Exception:
            self.store.close()
            raise
        self.connections.max_total = connection_cap(self.config.max_connections)
        self._exports = asyncio.Semaphore(max(1, self.config.max_exports))
        self._sweeper = PeriodicCallback(self._sweep, 500)
        self._sweeper.start()
        self.lag.start()
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self._sweeper.stop()
        self.lag.stop()
        for handler in [*self.pending, *self.students.values(), *(t for ts in self.teachers.values() for t in ts)]:
            handler.close(1001, "hub shutting down: reconnect shortly")
        await self.backplane.stop()
        self.store.close()

    # --- classes and joining (HTTP API and CLI) ---

    def create_class(self, title: str) -> dict[str, Any]:
        """A new class: id, teacher token, join code and the page paths for both. Blocks on a commit."""
        title = clean_title(title, "title")
        class_id = auth.new_class_id()
        self.store.add_class(class_id, title)
        self.store.flush()  # the teacher's page loads the class right after
        return class_links(self.secret, class_id, title)

    def join(self, class_id: str, code: str, name: str) -> dict[str, Any]:
        """Check the join code and give the student a server-chosen id and a signed token (no rate limits)."""
        auth.check_join_code(self.secret, class_id, code)
        name = clean_title(name, "name")
        student_id = auth.new_student_id()
        self.store.add_class(class_id, "")
        self.store.add_student(class_id, student_id, name)
        return {
            "class_id": class_id,
            "student_id": student_id,
            "name": name,
            "token": auth.student_token(self.secret, class_id, student_id, name=name),
        }

    async def join_limited(self, class_id: Any, code: Any, name: Any, address: str) -> dict[str, Any]:
        """``join`` behind the limits: attempts per address, joins per class, students per class.

        Raises ``HttpRefusal`` (429/503), ``auth.AuthError`` (wrong code) or ``ValueError`` (bad name).
        """
        now = time.monotonic()
        self.joins.attempt(address, now, trusted=address in self.connections.trusted)
        auth.check_join_code(self.secret, class_id, code)
        clean_title(name, "name")
        if class_id not in self.class_sizes:
            n = await asyncio.get_running_loop().run_in_executor(None, self.store.count_students, class_id)
            self.class_sizes.setdefault(class_id, n)
        size = self.class_sizes[class_id]
        self.joins.admit(class_id, size, now)
        self.class_sizes[class_id] = size + 1
        return self.join(class_id, code, name)

    def health(self, lag_window: float = 10.0) -> dict[str, Any]:
        out = {
            "ok": self.started,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "students": len(self.students),
            "teachers": sum(len(t) for t in self.teachers.values()),
            "connections": self.connections.total,
            "loop_lag_ms": self.lag.summary(lag_window),
        }
        for key, fn in self.health_extras.items():
            out[key] = fn()
        return out

    # --- rooms ---

    async def room(self, class_id: str) -> ClassRoom:
        """The class's room, loaded once from the store (off the loop) and the backplane."""
        room = self.rooms.get(class_id)
        if room is not None:
            return room
        loading = self._loading.get(class_id)
        if loading is None:
            loading = self._loading[class_id] = keep(asyncio.ensure_future(self._load_room(class_id)))
            loading.add_done_callback(lambda _: self._loading.pop(class_id, None))
        return await asyncio.shield(loading)

    def _read_room(self, class_id: str) -> ClassRoom:
        """Runs in an executor: the store's reads (after a flush: students who just joined must be in)."""
        store = self.store
        store.flush()
        room = ClassRoom(class_id)
        info = store.class_info(class_id)
        if info:
            room.title, room.emotions = info["title"], info["emotions"]
        opened = store.open_session(class_id)
        if opened:
            room.session_id = opened[0]
            room.segment_count = store.segment_count(opened[0])
            seg = store.open_segment(opened[0])
            if seg:
                room.apply({**room.status_event(), "segment": dict(zip(("segment_id", "title", "start"), seg))})
        for student_id, name, hidden in store.class_students(class_id):
            room.apply({"type": "student", "student_id": student_id, "name": name, "hidden": hidden})
        for event in store.latest_states(class_id).values():
            room.apply(event)
        return room

    async def _load_room(self, class_id: str) -> ClassRoom:
        room = await asyncio.get_running_loop().run_in_executor(None, self._read_room, class_id)
        events = await self.backplane.load(class_id)
        if class_id in self.rooms:
            return self.rooms[class_id]
        for event in events:
            room.apply(event)
        self.rooms[class_id] = room
        return room

    async def session_class(self, session_id: str) -> str | None:
        """The class of a session: a live room's open session first (its row may not be committed yet: a
        teacher page asks for the history of the session its snapshot names at once), then the store, off
        the loop, committing what is queued if the first look finds nothing."""
        for room in self.rooms.values():
            if room.session_id == session_id:
                return room.class_id
        store = self.store

        def lookup() -> str | None:
            found = store.session_class(session_id)
            if found is None:
                store.flush()
                found = store.session_class(session_id)
            return found

        return await asyncio.get_running_loop().run_in_executor(None, lookup)

    def _new_session_id(self) -> str:
        return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)

    def _broadcast(self, class_id: str, event: dict[str, Any], remote: bool = False) -> None:
        """Send an event to the class's teachers (and, for ``class`` events, its students)."""
        text = dumps(event)
        for teacher in self.teachers.get(class_id, ()):
            teacher.enqueue(text)
        if event["type"] == "class":
            for (cid, _), student in self.students.items():
                if cid == class_id:
                    student.send(text)
        if not remote:
            self.backplane.publish(class_id, event)

    def _on_remote_event(self, class_id: str, event: dict[str, Any]) -> None:
        room = self.rooms.get(class_id)
        if room is None:
            return  # loaded from the backplane's hash when someone here needs it
        room.apply(event)
        self._broadcast(class_id, event, remote=True)

    def ensure_session(self, room: ClassRoom, now: float) -> None:
        """Open a session implicitly when a student or teacher arrives and none is open."""
        event = room.ensure_session(self._new_session_id)
        if event is not None:
            self.store.start_session(room.class_id, room.session_id, now)
            self._broadcast(room.class_id, event)

    # --- connections ---

    def attach_student(self, handler: "StudentSocket", room: ClassRoom, claims: auth.Claims) -> dict[str, Any]:
        now = time.time()
        self.ensure_session(room, now)
        key = (room.class_id, handler.conn.student_id)
        old = self.students.get(key)
        self.students[key] = handler
        if old is not None:
            old.close(CloseCode.REPLACED, "this student connected again elsewhere")
        s = room.student(handler.conn.student_id)
        name = s.name or claims.name or ""
        if not s.name and name:
            self.store.add_student(room.class_id, s.student_id, name)
        self._broadcast(room.class_id, room.connect(s.student_id, name, now))
        last_seq = s.state["seq"] if s.state else -1
        handler.conn.last_seq = last_seq
        return {**room.status_event(), "type": "welcome", "student_id": s.student_id, "name": s.name,
                "last_seq": last_seq}

    def detach_student(self, handler: "StudentSocket") -> None:
        key = (handler.conn.class_id, handler.conn.student_id)
        if self.students.get(key) is not handler:
            return  # replaced, or never authenticated
        del self.students[key]
        room = self.rooms.get(key[0])
        if room is not None:
            self._broadcast(key[0], room.presence_event(key[1], "disconnected", time.time()))

    def attach_teacher(self, handler: "TeacherSocket", room: ClassRoom) -> None:
        """Seat a teacher socket (raises ``Refusal`` past the class's cap; closes the token's oldest past its own)."""
        for old in self.seats.admit(room.class_id, handler.conn.token, handler):
            old.close(CloseCode.REPLACED,
                      f"this teacher link is open in more than {self.config.max_teachers_per_token} pages: "
                      "the oldest was closed")
            old.on_close()
        self.ensure_session(room, time.time())
        self.teachers.setdefault(room.class_id, set()).add(handler)

    def detach_teacher(self, handler: "TeacherSocket") -> None:
        self.seats.leave(handler.class_id, handler)
        self.teachers.get(handler.class_id, set()).discard(handler)

    def accept_state(self, handler: "StudentSocket", msg: StateMessage) -> None:
        """Route a validated state: teachers first, then the backplane and the store (ack after commit).

        Teachers get the hub's own serialisation of what it validated, never the client's text: that text
        may repeat keys or carry anything the validated object does not.
        """
        room = self.rooms[msg.class_id]
        if not room.known_segment(msg.segment):
            handler.send(dumps({"type": "nack", "seq": msg.seq, "last_seq": handler.conn.last_seq,
                                "reason": f"unknown segment {msg.segment!r}: dropped"}))
            return
        now = time.time()
        if room.session_id is None:
            self.ensure_session(room, now)
        event = room.state_event(msg, now)
        if event["segment"] is None and room.segment is not None:
            event["segment"] = room.segment.segment_id  # stamped late: the student had not heard of it yet
        text = dumps(event)
        for teacher in self.teachers.get(msg.class_id, ()):
            teacher.enqueue(text)
        self.backplane.publish(msg.class_id, event)
        self.store.add_state(room.session_id, event, ack=(handler, msg.seq))

    def command(self, room: ClassRoom, cmd: TeacherCommand) -> dict[str, Any]:
        now = time.time()
        before = room.session_id
        try:
            events = room.command(cmd, now, self._new_session_id)
        except KeyError as exc:
            return {"type": "result", "id": cmd.id, "ok": False, "error": exc.args[0]}
        store = self.store
        if cmd.command == "end_session":
            store.end_session(room.class_id, now)
        elif room.session_id != before:
            title = cmd.title if cmd.command == "start_session" else None
            store.start_session(room.class_id, room.session_id, now, title)
        if cmd.command == "start_segment":
            seg = room.segment
            store.start_segment(room.session_id, seg.segment_id, seg.title, seg.start)
        if cmd.command == "set_emotions":
            store.add_class(room.class_id, room.title)
            store.set_emotions(room.class_id, room.emotions)
        for event in events:
            if event["type"] == "student":
                store.update_student(room.class_id, event["student_id"], event["name"], event["hidden"])
        store.add_command(room.session_id or before, room.class_id, now, cmd.command, cmd.args())
        for event in events:
            self._broadcast(room.class_id, event)
        return {"type": "result", "id": cmd.id, "ok": True, "session_id": room.session_id}

    def _sweep(self) -> None:
        now = time.monotonic()
        for handler in list(self.pending):
            if now - handler.opened > self.config.hello_timeout:
                handler.close(CloseCode.HELLO_TIMEOUT, "no hello received: send hello with your token first")
        interval = self.config.ping_interval
        for handler in [*self.students.values(), *(t for ts in self.teachers.values() for t in ts)]:
            silent = now - handler.last_alive
            if silent > self.config.dead_after:
                log.info("closing a dead %s connection (silent for %.1f s)", handler.role, silent)
                handler.close(CloseCode.DEAD, "no pong: connection considered dead")
                handler.on_close()  # mark disconnected now, not when TCP gives up
            elif silent > interval and now - handler.last_ping > interval:
                # Only silent clients are pinged: a student publishing a few times a second is visibly
                # alive, which spares a thousand pings and pongs every couple of seconds.
                handler.last_ping = now
                handler.ping()
        if now - self._swept_buckets > 10:  # buckets that refilled completely are forgotten (they'd start full)
            self._swept_buckets = now
            self.buckets.sweep(now)


def class_links(secret: str, class_id: str, title: str) -> dict[str, Any]:
    code = auth.join_code(secret, class_id)
    token = auth.teacher_token(secret, class_id)
    return {
        "class_id": class_id,
        "title": title,
        "teacher_token": token,
        "join_code": code,
        "join_path": f"/voila/render/student.ipynb?class={class_id}&join={code}",
        "teacher_path": f"/voila/render/teacher.ipynb?class={class_id}&token={token}",
    }


# --- websockets: bytes in, bytes out ---

#: Messages a connection may send while its class loads (they wait, then go through the usual checks).
MAX_WAITING = 64


class _Socket(WebSocket):
    role = ""

    def __init__(self, hub: Hub, address: str, class_id: str, student_id: str | None = None) -> None:
        # The transport's own hard cap; the protocol refuses anything above max_message_bytes with 4009 first.
        super().__init__(max_size=max(65536, 4 * hub.config.max_message_bytes))
        self.write_limit = hub.config.max_write_buffer
        self.send_buffer = hub.config.socket_send_buffer
        self.hub = hub
        self.address = address  # its slot in hub.connections is given back in on_close
        self.class_id, self.student_id = class_id, student_id
        self.conn: Connection | None = None
        self.closed = False
        self.waiting: list[str | bytes] | None = None  # messages that arrive while the class loads

    def on_open(self) -> None:
        if not self.hub.started:
            self.close(1013, "hub not running: try again shortly")
            return
        now = time.monotonic()
        self.opened = self.last_alive = now
        self.last_ping = 0.0
        self.conn = Connection(self.role, self.class_id, self.student_id, self.hub.secret, self.hub.limits, now,
                               self.hub.buckets)
        self.hub.pending.add(self)

    def on_pong(self, data: bytes) -> None:
        self.last_alive = time.monotonic()

    def on_backlog(self, pending: int) -> None:
        # Whatever it sends, a client that does not read what it is sent is closed: its backlog would grow
        # in the hub's memory as long as its class publishes.
        self.hub.quiet("closing a %s connection from %s: %d bytes unread", self.role, self.address, pending)
        self.close(CloseCode.DEAD, "too slow: not reading what the hub sends")
        # Leave the class now (no more events queued for it), once the fan-out that got here is done.
        asyncio.get_running_loop().call_soon(self.on_close)

    def refuse(self, refusal: Refusal) -> None:
        self.hub.quiet("refused %s connection from %s: %d %s", self.role, self.address, refusal.code, refusal.reason)
        self.close(refusal.code, refusal.reason)

    def on_message(self, message: str | bytes) -> None:
        if self.conn is None or self.closed or not self.hub.started:
            return
        if self.waiting is not None:
            if len(self.waiting) >= MAX_WAITING:
                self.refuse(Refusal(CloseCode.RATE_LIMITED, "too many messages before the welcome"))
            else:
                self.waiting.append(message)
            return
        now = time.monotonic()
        self.last_alive = now
        try:
            event = self.conn.receive(message, now, time.time())
            if isinstance(event, Hello):
                self.hub.pending.discard(self)
                room = self.hub.rooms.get(self.class_id)
                if room is None:
                    self.waiting = []
                    keep(asyncio.ensure_future(self._load_then_welcome(event)))
                else:
                    self.welcome(room, event)
            else:
                self.handle(event)
        except Refusal as refusal:
            self.refuse(refusal)
        except Exception:  # a bug must cost one connection, never the hub
            log.exception("error handling a %s message", self.role)
            self.close(1011, "hub error: reconnect")

    async def _load_then_welcome(self, hello: Hello) -> None:
        try:
            room = await self.hub.room(self.class_id)
        except Exception:
            log.exception("could not load class %s", self.class_id)
            self.close(1011, "hub error loading the class: try again")
            return
        if self.closed:
            return
        try:
            self.welcome(room, hello)
        except Refusal as refusal:
            self.refuse(refusal)
            return
        waiting, self.waiting = self.waiting, None
        for message in waiting:
            self.on_message(message)

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.hub.pending.discard(self)
        self.hub.connections.release(self)
        if self.conn is not None and self.conn.authenticated:
            self.leave()


class StudentSocket(_Socket):
    role = "student"

    def welcome(self, room: ClassRoom, hello: Hello) -> None:
        self.send(dumps(self.hub.attach_student(self, room, hello.claims)))

    def handle(self, event) -> None:
        if isinstance(event, Stale):
            self.send(dumps({"type": "nack", "seq": event.seq, "last_seq": event.last_seq,
                             "reason": "seq not above the last accepted one: dropped"}))
        else:
            self.hub.accept_state(self, event)

    def leave(self) -> None:
        self.hub.detach_student(self)


class TeacherSocket(_Socket):
    role = "teacher"

    def __init__(self, hub: Hub, address: str, class_id: str) -> None:
        super().__init__(hub, address, class_id)
        self.outgoing: list[str] = []
        self.seated = False

    def welcome(self, room: ClassRoom, hello: Hello) -> None:
        self.room = room
        self.hub.attach_teacher(self, room)
        self.seated = True
        snapshot = room.snapshot().to_dict()
        snapshot["join_code"] = auth.join_code(self.hub.secret, room.class_id)  # for the page's join link
        self.send(dumps(snapshot))

    def handle(self, cmd: TeacherCommand) -> None:
        self.enqueue(dumps(self.hub.command(self.room, cmd)))

    def enqueue(self, text: str) -> None:
        """Send ``text`` at the end of this loop iteration, together with whatever else is due then.

        Several events for one teacher go out as one ``batch`` frame: one write instead of many when a
        whole class publishes at once, which is most of the hub's work at 1000 students.
        """
        if self.closed:
            return
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.send_outgoing)
        self.outgoing.append(text)

    def send_outgoing(self) -> None:
        texts, self.outgoing = self.outgoing, []
        if len(texts) == 1:
            self.send(texts[0])
        elif texts:
            self.send('{"type":"batch","events":[' + ",".join(texts) + "]}")

    def leave(self) -> None:
        if self.seated:
            self.hub.detach_teacher(self)


class _Route(WebSocketRoute):
    def initialize(self, hub: Hub, socket: type[_Socket]) -> None:
        self.hub = hub
        self.socket = socket

    def check_origin(self, origin: str) -> bool:
        allowed = self.hub.config.allowed_origins
        return "*" in allowed or origin in allowed or urlparse(origin).netloc == self.request.host

    def connection(self, *path_args: str) -> _Socket | None:
        address = self.request.remote_ip or "local"
        ws = self.socket(self.hub, address, *path_args)
        # The HTTP connection's slot (when our HTTP server counted it) becomes the websocket's.
        stream = getattr(self.request.connection, "stream", None)
        if not self.hub.connections.transfer(stream, ws):
            why = self.hub.connections.acquire(ws, address)
            if why is not None:
                self.hub.quiet("refused a websocket from %s: %s", address, why)
                self.refuse(503, json.dumps({"error": why, "status": 503}), **{"Retry-After": "10"})
                return None
        return ws


def log_request(handler: web.RequestHandler) -> None:
    """The access log: client errors (4xx) through the hub's rate-limited log, the rest as tornado logs them."""
    status = handler.get_status()
    request = handler.request
    ms = 1000.0 * request.request_time()
    if 400 <= status < 500 and isinstance(getattr(handler, "hub", None), Hub):
        handler.hub.quiet("%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip, ms)
        return
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    logging.getLogger("tornado.access").log(level, "%d %s %.2fms", status, handler._request_summary(), ms)


@web.stream_request_body
class _Api(web.RequestHandler):
    """A JSON API route. Bodies are refused by their declared length before a byte of them is read (413),
    streamed bodies as soon as they pass the limit; parsing is bounded (400, never 500)."""

    def initialize(self, hub: Hub) -> None:
        self.hub = hub
        self._body = bytearray()
        self._too_big = False

    def check_xsrf_cookie(self) -> None:
        pass  # no cookies are honoured here: every call carries its token or join code

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        limit = self.hub.config.max_message_bytes
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                self.fail(400, "Content-Length must be a number of bytes")
            if length > limit:
                # Answer now and close: the body is never read (tornado would otherwise refuse only above
                # the server-wide max_body_bytes, and with a bare 400).
                self.request.connection.set_max_body_size(length)
                self.fail(413, f"body larger than {limit} bytes")

    def data_received(self, chunk: bytes) -> None:
        if self._too_big or len(self._body) + len(chunk) > self.hub.config.max_message_bytes:
            self._too_big = True  # a chunked body past the limit: nothing more is kept
            return
        self._body += chunk

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        if isinstance(exc, _Refused) and exc.retry_after is not None:
            self.set_header("Retry-After", str(max(1, int(exc.retry_after + 0.999))))
        self.finish(json.dumps({"error": message, "status": status_code}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, web.HTTPError):
            return  # a refusal, already in the access log (rate-limited)
        super().log_exception(typ, value, tb)

    def fail(self, status: int, message: str, retry_after: float | None = None) -> None:
        raise _Refused(status, message.replace("%", "%%"), retry_after)

    def body(self) -> dict[str, Any]:
        if self._too_big:
            self.fail(413, f"body larger than {self.hub.config.max_message_bytes} bytes")
        try:
            text = bytes(self._body).decode()
        except UnicodeDecodeError:
            self.fail(400, "body must be JSON (UTF-8)")
        try:
            body = parse_json(text or "{}", self.hub.config.max_json_depth)
        except JsonError as exc:
            self.fail(400, "body must be JSON" if str(exc) == "malformed JSON" else f"body must be JSON: {exc}")
        if not isinstance(body, dict):
            self.fail(400, "body must be a JSON object")
        return body

    def claims(self) -> auth.Claims:
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            self.fail(401, "send 'Authorization: Bearer <token>'")
        try:
            return auth.verify_token(self.hub.secret, header[7:].strip())
        except auth.AuthError as exc:
            self.fail(401, str(exc))

    def teacher_of(self, class_id: str | None, claims: auth.Claims | None = None) -> None:
        claims = claims or self.claims()
        if claims.role != "teacher" or claims.class_id != class_id:
            self.fail(403, "a teacher token of this class is required")

    async def teacher_of_session(self, session_id: str) -> None:
        """401 without a valid token (before any lookup), 403 unless it is the session's class's teacher."""
        claims = self.claims()
        if claims.role != "teacher":
            self.fail(403, "a teacher token of this class is required")
        self.teacher_of(await self.hub.session_class(session_id), claims)


class _Refused(web.HTTPError):
    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(status, message)
        self.retry_after = retry_after


class HealthHandler(_Api):
    def get(self) -> None:
        try:
            window = min(60.0, max(0.1, float(self.get_argument("lag_window", "10"))))
        except ValueError:
            self.fail(400, "lag_window must be a number of seconds")
        self.finish(json.dumps(self.hub.health(window)))


class ClassesHandler(_Api):
    async def post(self) -> None:
        claims = self.claims()
        if claims.role not in ("admin", "teacher"):
            self.fail(403, "only the admin token or a teacher token may create classes")
        body = self.body()
        try:
            info = await asyncio.get_running_loop().run_in_executor(None, self.hub.create_class, body.get("title"))
        except ValueError as exc:
            self.fail(400, str(exc))
        origin = f"{self.request.protocol}://{self.request.host}"
        info["join_url"] = origin + info["join_path"]
        info["teacher_url"] = origin + info["teacher_path"]
        self.set_status(201)
        self.finish(json.dumps(info))


class JoinHandler(_Api):
    async def post(self) -> None:
        body = self.body()
        address = self.request.remote_ip or "local"
        try:
            joined = await self.hub.join_limited(body.get("class_id"), body.get("join_code"), body.get("name"),
                                                 address)
        except HttpRefusal as exc:
            self.fail(exc.status, exc.reason, exc.retry_after)
        except auth.AuthError as exc:
            self.fail(403, str(exc))
        except ValueError as exc:
            self.fail(400, str(exc))
        self.finish(json.dumps(joined))


class SessionsHandler(_Api):
    async def get(self, class_id: str) -> None:
        self.teacher_of(class_id)
        sessions = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.hub.store.sessions(class_id).to_json(orient="records"))
        self.finish(sessions)


class ExportHandler(_Api):
    """A session's export, streamed: SQLite writes the rows' JSON off the loop, piece by piece, and the loop
    only passes the pieces on, so a report of a long lesson does not hold up the class (or any other)."""

    async def get(self, session_id: str, fmt: str) -> None:
        await self.teacher_of_session(session_id)  # 403 for unknown sessions too: nothing to learn from it
        store = self.hub.store
        loop = asyncio.get_running_loop()
        async with self.hub._exports:
            if fmt == "csv":
                self.set_header("Content-Type", "text/csv; charset=utf-8")
                self.set_header("Content-Disposition", f'attachment; filename="{session_id}.csv"')

            def start():
                store.flush()
                return store.iter_session_json(session_id) if fmt == "json" else store.iter_states_csv(session_id)

            pieces = await loop.run_in_executor(None, start)
            try:
                while (piece := await loop.run_in_executor(None, next, pieces, None)) is not None:
                    self.write(piece)
                    await self.flush()
            except iostream.StreamClosedError:
                return  # the teacher went away
            finally:
                await loop.run_in_executor(None, pieces.close)
        self.finish()


class HistoryHandler(_Api):
    async def get(self, session_id: str) -> None:
        await self.teacher_of_session(session_id)
        try:
            every = float(self.get_argument("every", "1"))
        except ValueError:
            self.fail(400, "every must be a number of seconds")
        if not 0.5 <= every <= 3600:
            self.fail(400, "every must be between 0.5 and 3600 seconds")
        store = self.hub.store

        def binned() -> str:
            store.flush()  # what the teacher's page has already seen live must be in the history too
            return json.dumps(store.history(session_id, every))

        # A long session is hundreds of thousands of rows: binned off the loop, which keeps relaying meanwhile.
        self.finish(await asyncio.get_running_loop().run_in_executor(None, binned))


def hub_handlers(hub: Hub, base_url: str = "/") -> list[tuple[str, type, dict]]:
    """Every route of the hub under ``{base_url}smartsession/``, for any tornado application."""
    root = base_url.rstrip("/") + "/smartsession"
    kw = {"hub": hub}
    return [
        (f"{root}/health", HealthHandler, kw),
        (f"{root}/api/classes", ClassesHandler, kw),
        (f"{root}/api/join", JoinHandler, kw),
        (f"{root}/api/classes/({IDENT})/sessions", SessionsHandler, kw),
        (f"{root}/api/sessions/({IDENT})/export\\.(csv|json)", ExportHandler, kw),
        (f"{root}/api/sessions/({IDENT})/history", HistoryHandler, kw),
        (f"{root}/ws/student/({IDENT})/({IDENT})", _Route, {**kw, "socket": StudentSocket}),
        (f"{root}/ws/teacher/({IDENT})", _Route, {**kw, "socket": TeacherSocket}),
    ]
