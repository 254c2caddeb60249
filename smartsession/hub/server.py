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

from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Int, List, Unicode, default
from traitlets.config import Configurable

from smartsession import __version__
from smartsession.hub import auth
from smartsession.hub.backplane import make_backplane
from smartsession.hub.protocol import (
    ClassRoom,
    CloseCode,
    Connection,
    Hello,
    Limits,
    Refusal,
    Stale,
    dumps,
)
from smartsession.hub.store import Store
from smartsession.hub.wire import WebSocket, WebSocketRoute
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
    max_message_bytes = Int(4096, help="Largest client message; larger ones close the connection (4009).").tag(
        config=True
    )
    rate = Float(20.0, help="Messages per second a connection may send, sustained.").tag(config=True)
    burst = Float(40.0, help="Messages a connection may send at once.").tag(config=True)
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
        self.limits = Limits(c.max_message_bytes, c.rate, c.burst)
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
        data_dir = Path(self.config.data_dir).expanduser()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.secret = self.config.secret or auth.load_secret(data_dir)
        self.admin_token = auth.load_admin_token(data_dir, self.secret)
        loop = asyncio.get_running_loop()
        self.store = Store(data_dir, batch_seconds=self.config.commit_interval,
                           on_acks=lambda acks: loop.call_soon_threadsafe(self.acks.add, acks))
        try:
            await self.backplane.start(self._on_remote_event)
        except Exception:
            self.store.close()
            raise
        self._sweeper = PeriodicCallback(self._sweep, 500)
        self._sweeper.start()
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self._sweeper.stop()
        for handler in [*self.pending, *self.students.values(), *(t for ts in self.teachers.values() for t in ts)]:
            handler.close(1001, "hub shutting down: reconnect shortly")
        await self.backplane.stop()
        self.store.close()

    # --- classes and joining (HTTP API and CLI) ---

    def create_class(self, title: str) -> dict[str, Any]:
        """A new class: id, teacher token, join code and the page paths for both."""
        title = clean_title(title, "title")
        class_id = auth.new_class_id()
        self.store.add_class(class_id, title)
        self.store.flush()  # rare, and the teacher's page loads the class right after
        return class_links(self.secret, class_id, title)

    def join(self, class_id: str, code: str, name: str) -> dict[str, Any]:
        """Check the join code and give the student a server-chosen id and a signed token."""
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

    def health(self) -> dict[str, Any]:
        out = {
            "ok": self.started,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "students": len(self.students),
            "teachers": sum(len(t) for t in self.teachers.values()),
        }
        for key, fn in self.health_extras.items():
            out[key] = fn()
        return out

    # --- rooms ---

    async def room(self, class_id: str) -> ClassRoom:
        room = self.rooms.get(class_id)
        if room is not None:
            return room
        room = ClassRoom(class_id)
        self.store.flush()  # once per class: students who just joined must be in the room
        info = self.store.class_info(class_id)
        if info:
            room.title, room.emotions = info["title"], info["emotions"]
        opened = self.store.open_session(class_id)
        if opened:
            room.session_id = opened[0]
            room.segment_count = self.store.segment_count(opened[0])
            seg = self.store.open_segment(opened[0])
            if seg:
                room.apply({**room.status_event(), "segment": dict(zip(("segment_id", "title", "start"), seg))})
        for student_id, name, hidden in self.store.class_students(class_id):
            room.apply({"type": "student", "student_id": student_id, "name": name, "hidden": hidden})
        for event in self.store.latest_states(class_id).values():
            room.apply(event)
        events = await self.backplane.load(class_id)
        if class_id in self.rooms:  # loaded meanwhile by another connection
            return self.rooms[class_id]
        for event in events:
            room.apply(event)
        self.rooms[class_id] = room
        return room

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

    def accept_state(self, handler: "StudentSocket", msg: StateMessage, raw: str | None) -> None:
        """Route a validated state: teachers first, then the backplane and the store (ack after commit)."""
        room = self.rooms[msg.class_id]
        now = time.time()
        if room.session_id is None:
            self.ensure_session(room, now)
        event = room.state_event(msg, now)
        if event["segment"] is None and room.segment is not None:
            event["segment"] = room.segment.segment_id  # stamped late: the student had not heard of it yet
            raw = None
        if raw is None:
            text = dumps(event)
        else:
            # The raw text passed validation (only known fields, checked values), so teachers get it as sent
            # plus the receive time, without encoding it again: the hot path of every classroom.
            text = raw.rstrip()[:-1] + ',"received":' + repr(now) + "}"
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


class _Socket(WebSocket):
    role = ""

    def __init__(self, hub: Hub, class_id: str, student_id: str | None = None) -> None:
        # The transport's own hard cap; the protocol refuses anything above max_message_bytes with 4009 first.
        super().__init__(max_size=max(65536, 4 * hub.config.max_message_bytes))
        self.hub = hub
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
        self.conn = Connection(self.role, self.class_id, self.student_id, self.hub.secret, self.hub.limits, now)
        self.hub.pending.add(self)

    def on_pong(self, data: bytes) -> None:
        self.last_alive = time.monotonic()

    def on_message(self, message: str | bytes) -> None:
        if self.conn is None or self.closed or not self.hub.started:
            return
        if self.waiting is not None:
            self.waiting.append(message)
            return
        now = time.monotonic()
        self.last_alive = now
        try:
            event = self.conn.receive(message, now)
        except Refusal as refusal:
            log.info("refused %s connection: %d %s", self.role, refusal.code, refusal.reason)
            self.close(refusal.code, refusal.reason)
            return
        try:
            if isinstance(event, Hello):
                self.hub.pending.discard(self)
                room = self.hub.rooms.get(self.class_id)
                if room is None:
                    self.waiting = []
                    asyncio.ensure_future(self._load_then_welcome(event))
                else:
                    self.welcome(room, event)
            else:
                self.handle(event, message)
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
        self.welcome(room, hello)
        waiting, self.waiting = self.waiting, None
        for message in waiting:
            self.on_message(message)

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.hub.pending.discard(self)
        if self.conn is not None and self.conn.authenticated:
            self.leave()


class StudentSocket(_Socket):
    role = "student"

    def welcome(self, room: ClassRoom, hello: Hello) -> None:
        self.send(dumps(self.hub.attach_student(self, room, hello.claims)))

    def handle(self, event, raw: str) -> None:
        if isinstance(event, Stale):
            self.send(dumps({"type": "nack", "seq": event.seq, "last_seq": event.last_seq,
                             "reason": "seq not above the last accepted one: dropped"}))
        else:
            self.hub.accept_state(self, event, raw if self.conn.verbatim else None)

    def leave(self) -> None:
        self.hub.detach_student(self)


class TeacherSocket(_Socket):
    role = "teacher"

    def __init__(self, hub: Hub, class_id: str) -> None:
        super().__init__(hub, class_id)
        self.outgoing: list[str] = []

    def welcome(self, room: ClassRoom, hello: Hello) -> None:
        self.room = room
        self.hub.ensure_session(room, time.time())
        self.hub.teachers.setdefault(room.class_id, set()).add(self)
        snapshot = room.snapshot().to_dict()
        snapshot["join_code"] = auth.join_code(self.hub.secret, room.class_id)  # for the page's join link
        self.send(dumps(snapshot))

    def handle(self, cmd: TeacherCommand, raw: str) -> None:
        self.enqueue(dumps(self.hub.command(self.room, cmd)))

    def enqueue(self, text: str) -> None:
        """Send ``text`` at the end of this loop iteration, together with whatever else is due then.

        Several events for one teacher go out as one ``batch`` frame: one write instead of many when a
        whole class publishes at once, which is most of the hub's work at 1000 students.
        """
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
        self.hub.teachers.get(self.conn.class_id, set()).discard(self)


class _Route(WebSocketRoute):
    def initialize(self, hub: Hub, socket: type[_Socket]) -> None:
        self.hub = hub
        self.socket = socket

    def check_origin(self, origin: str) -> bool:
        allowed = self.hub.config.allowed_origins
        return "*" in allowed or origin in allowed or urlparse(origin).netloc == self.request.host

    def connection(self, *path_args: str) -> _Socket:
        return self.socket(self.hub, *path_args)


class _Api(web.RequestHandler):
    def initialize(self, hub: Hub) -> None:
        self.hub = hub

    def check_xsrf_cookie(self) -> None:
        pass  # no cookies are honoured here: every call carries its token or join code

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.finish(json.dumps({"error": message, "status": status_code}))

    def fail(self, status: int, message: str) -> None:
        raise web.HTTPError(status, message.replace("%", "%%"))

    def body(self) -> dict[str, Any]:
        if len(self.request.body) > self.hub.config.max_message_bytes:
            self.fail(413, f"body larger than {self.hub.config.max_message_bytes} bytes")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            self.fail(400, "body must be JSON")
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

    def teacher_of(self, class_id: str | None) -> None:
        claims = self.claims()
        if claims.role != "teacher" or claims.class_id != class_id:
            self.fail(403, "a teacher token of this class is required")


class HealthHandler(_Api):
    def get(self) -> None:
        self.finish(json.dumps(self.hub.health()))


class ClassesHandler(_Api):
    def post(self) -> None:
        claims = self.claims()
        if claims.role not in ("admin", "teacher"):
            self.fail(403, "only the admin token or a teacher token may create classes")
        body = self.body()
        try:
            info = self.hub.create_class(body.get("title"))
        except ValueError as exc:
            self.fail(400, str(exc))
        origin = f"{self.request.protocol}://{self.request.host}"
        info["join_url"] = origin + info["join_path"]
        info["teacher_url"] = origin + info["teacher_path"]
        self.set_status(201)
        self.finish(json.dumps(info))


class JoinHandler(_Api):
    def post(self) -> None:
        body = self.body()
        try:
            self.finish(json.dumps(self.hub.join(body.get("class_id"), body.get("join_code"), body.get("name"))))
        except auth.AuthError as exc:
            self.fail(403, str(exc))
        except ValueError as exc:
            self.fail(400, str(exc))


class SessionsHandler(_Api):
    def get(self, class_id: str) -> None:
        self.teacher_of(class_id)
        sessions = self.hub.store.sessions(class_id)
        self.finish(sessions.to_json(orient="records"))


class ExportHandler(_Api):
    def get(self, session_id: str, fmt: str) -> None:
        class_id = self.hub.store.session_class(session_id)
        self.teacher_of(class_id)  # 403 for unknown sessions too: nothing to learn from the status
        self.hub.store.flush()
        if fmt == "json":
            self.finish(self.hub.store.session_json(session_id))
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{session_id}.csv"')
        self.finish(self.hub.store.states(session_id).to_csv(index=False))


class HistoryHandler(_Api):
    async def get(self, session_id: str) -> None:
        class_id = self.hub.store.session_class(session_id)
        self.teacher_of(class_id)
        try:
            every = float(self.get_argument("every", "1"))
        except ValueError:
            self.fail(400, "every must be a number of seconds")
        if not 0.5 <= every <= 3600:
            self.fail(400, "every must be between 0.5 and 3600 seconds")
        store = self.hub.store

        def binned() -> dict[str, Any]:
            store.flush()  # what the teacher's page has already seen live must be in the history too
            return store.history(session_id, every)

        # A long session is hundreds of thousands of rows: binned off the loop, which keeps relaying meanwhile.
        self.finish(json.dumps(await asyncio.get_running_loop().run_in_executor(None, binned)))


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
