"""The hub's tornado layer: websockets and the HTTP API, bytes in and bytes out.

``hub_handlers(hub)`` gives the routes for any tornado app (``smartsession serve``, ``smartsession hub``,
the Jupyter server extension). The handlers only move bytes: ``protocol`` decides what a message means and
``core.Hub`` what it does (routing, storing, limits).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable
from urllib.parse import urlparse

from tornado import httputil, iostream, web

from smartsession.hub import auth
from smartsession.hub.core import REPLACED_LINK, Hub
from smartsession.hub.protocol import (
    CloseCode,
    Connection,
    Hello,
    HttpRefusal,
    JsonError,
    Refusal,
    Stale,
    dumps,
    nack,
    parse_json,
)
from smartsession.hub.room import ClassRoom
from smartsession.hub.wire import WebSocket, WebSocketRoute, keep
from smartsession.schema import IDENT_PATTERN as IDENT, CheckinAnswer, CheckinAsk, TeacherCommand

log = logging.getLogger("smartsession.hub")



#: Messages a connection may send while its class loads (they wait, then go through the usual checks).
MAX_WAITING = 64


class _Socket(WebSocket):
    role = ""
    reads_store_first = False  # whether the welcome waits for a store read even when the room is loaded

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
                if room is None or self.reads_store_first:
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
            if self.reads_store_first:
                self.stored_seq = await self.hub.stored_seq(self.class_id, self.conn.student_id)
        except Exception:
            log.exception("could not load class %s", self.class_id)
            self.close(1011, "hub error loading the class: try again")
            return
        if self.closed:
            return
        if not await self.hub.teacher_token_current(hello.claims):
            self.refuse(Refusal(CloseCode.AUTH_FAILED, REPLACED_LINK))
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


#: Seconds a batch's states may be stamped before its arrival: a batch covers about a second, and a client's times
#: must not move its states far back in the class's history.
MAX_BATCH_SPAN = 2.0


class StudentSocket(_Socket):
    role = "student"
    stored_seq: int | None = None
    last_received = 0.0  # the hub's receive time stamped on this socket's latest state from a batch

    @property
    def reads_store_first(self) -> bool:
        return self.hub.config.store_url != ""

    def welcome(self, room: ClassRoom, hello: Hello) -> None:
        self.send(dumps(self.hub.attach_student(self, room, hello.claims, self.stored_seq)))

    def handle(self, event) -> None:
        if not isinstance(event, list):
            if isinstance(event, Stale):
                self.send(nack(event.seq, event.last_seq, "seq not above the last accepted one: dropped"))
            elif isinstance(event, CheckinAnswer):
                self.hub.answer(self, event)
            else:
                self.hub.accept_state(self, event)
            return
        # A batch: its states in order, each received (on the hub's clock) as much before the batch arrived as it
        # was captured before the batch's newest, so the per-second history sees the frames where they were.
        now = time.time()
        newest = max((one.t for one in event if not isinstance(one, Stale)), default=0.0)
        for one in event:
            if isinstance(one, Stale):
                self.send(nack(one.seq, one.last_seq, "seq not above the last accepted one: dropped"))
            else:
                # Never before a state this socket already passed on: the history stays in seq order.
                self.last_received = max(self.last_received, now - min(MAX_BATCH_SPAN, max(0.0, newest - one.t)))
                self.hub.accept_state(self, one, self.last_received)

    def leave(self) -> None:
        self.hub.detach_student(self)


class TeacherSocket(_Socket):
    role = "teacher"
    reads_store_first = True  # whether its token was revoked (rotate_teacher_token) is in the store

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
        snapshot["checkin"] = self.hub.book(room.class_id).status()
        self.send(dumps(snapshot))

    def handle(self, cmd: TeacherCommand | CheckinAsk) -> None:
        if isinstance(cmd, CheckinAsk):
            self.enqueue(dumps(self.hub.ask(self.room, cmd)))
        else:
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


class HubRoute(WebSocketRoute):
    """A websocket route of this server: origins as the hub allows them, each connection counted against the
    hub's connection caps. ``socket(hub, address, *path_args)`` makes the connection."""

    def initialize(self, hub: Hub, socket: Callable[..., WebSocket]) -> None:
        self.hub = hub
        self.socket = socket

    def check_origin(self, origin: str) -> bool:
        allowed = self.hub.config.allowed_origins
        return "*" in allowed or origin in allowed or urlparse(origin).netloc == self.request.host

    def connection(self, *path_args: str) -> WebSocket | None:
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
    """The access log: client errors (4xx) through the hub's rate-limited log, server errors as errors; requests
    that went well only at DEBUG (a load balancer's health checks would otherwise fill the terminal)."""
    status = handler.get_status()
    request = handler.request
    ms = 1000.0 * request.request_time()
    if 400 <= status < 500 and isinstance(getattr(handler, "hub", None), Hub):
        handler.hub.quiet("%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip, ms)
        return
    level = logging.DEBUG if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    logging.getLogger("tornado.access").log(level, "%d %s %s (%s) %.2fms", status, request.method, request.uri,
                                            request.remote_ip, ms)


def reason_of(status_code: int, exc: BaseException | None) -> str:
    """The reason phrase tornado sends with an error status (an ``HTTPError``'s own, or the standard one)."""
    if isinstance(exc, web.HTTPError) and exc.reason:
        return exc.reason
    return httputil.responses.get(status_code, "Unknown")


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

    @property
    def body_limit(self) -> int:
        return self.hub.config.max_message_bytes

    def prepare(self) -> None:
        limit = self.body_limit
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
        if self._too_big or len(self._body) + len(chunk) > self.body_limit:
            self._too_big = True  # a chunked body past the limit: nothing more is kept
            return
        self._body += chunk

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else reason_of(status_code, exc)
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
            self.fail(413, f"body larger than {self.body_limit} bytes")
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
        claims = await self.current_claims()
        if claims.role != "teacher":
            self.fail(403, "a teacher token of this class is required")
        self.teacher_of(await self.hub.session_class(session_id), claims)

    async def current_claims(self) -> auth.Claims:
        """``claims()``, and 401 for a teacher token its class rotated away."""
        claims = self.claims()
        if not await self.hub.teacher_token_current(claims):
            self.fail(401, REPLACED_LINK)
        return claims




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
        claims = await self.current_claims()
        if claims.role not in ("admin", "teacher"):
            self.fail(403, "only the admin token or a teacher token may create classes")
        body = self.body()
        try:
            info = await asyncio.get_running_loop().run_in_executor(
                None, self.hub.create_class_for, claims, body.get("title"))
        except HttpRefusal as exc:
            self.fail(exc.status, exc.reason, exc.retry_after)
        except ValueError as exc:
            self.fail(400, str(exc))
        origin = f"{self.request.protocol}://{self.request.host}"
        info["join_url"] = origin + info["join_path"]
        info["teacher_url"] = origin + info["teacher_path"]
        self.set_status(201)
        self.finish(json.dumps(info))


class RotateTokenHandler(_Api):
    """``POST .../api/classes/<id>/rotate-token`` with the admin token: old teacher links stop working."""

    async def post(self, class_id: str) -> None:
        if self.claims().role != "admin":
            self.fail(403, "only the admin token may rotate a class's teacher token")
        try:
            info = await asyncio.get_running_loop().run_in_executor(None, self.hub.rotate_teacher_token, class_id)
        except KeyError as exc:
            self.fail(404, str(exc.args[0]))
        await self.hub.announce_revocation(class_id)
        origin = f"{self.request.protocol}://{self.request.host}"
        info["join_url"] = origin + info["join_path"]
        info["teacher_url"] = origin + info["teacher_path"]
        self.finish(json.dumps(info))


class JoinHandler(_Api):
    async def post(self) -> None:
        body = self.body()
        address = self.request.remote_ip or "local"
        try:
            joined = await self.hub.join_limited(body.get("class_id"), body.get("join_code"), body.get("name"),
                                                 address, body.get("seat"))
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


class PlanHandler(_Api):
    """The class's lesson plan: GET it, POST ``{"text": outline}`` to replace it (parsed and bounded here too)."""

    @property
    def body_limit(self) -> int:
        return self.hub.config.max_plan_bytes

    async def get(self, class_id: str) -> None:
        self.teacher_of(class_id)
        store = self.hub.store

        def read() -> list[str]:
            store.flush()  # a plan saved a moment ago must come back
            return store.plan(class_id)

        items = await asyncio.get_running_loop().run_in_executor(None, read)
        self.finish(json.dumps({"class_id": class_id, "items": items}))

    async def post(self, class_id: str) -> None:
        from smartsession.lesson.plan import PlanError, parse_plan

        self.teacher_of(class_id)
        text = self.body().get("text")
        try:
            items = parse_plan(text)
        except PlanError as exc:
            self.fail(400, str(exc))
        self.hub.store.save_plan(class_id, items)
        self.finish(json.dumps({"class_id": class_id, "items": items}))


class LessonsHandler(_Api):
    """The class's past lessons, summarised (``lesson.history``), newest last."""

    async def get(self, class_id: str) -> None:
        from smartsession.lesson.history import summarise

        self.teacher_of(class_id)
        store = self.hub.store

        def read() -> str:
            store.flush()
            return json.dumps(summarise(store.lesson_rows(class_id)))

        self.finish(await asyncio.get_running_loop().run_in_executor(None, read))


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
        (f"{root}/api/classes/({IDENT})/rotate-token", RotateTokenHandler, kw),
        (f"{root}/api/classes/({IDENT})/sessions", SessionsHandler, kw),
        (f"{root}/api/classes/({IDENT})/plan", PlanHandler, kw),
        (f"{root}/api/classes/({IDENT})/lessons", LessonsHandler, kw),
        (f"{root}/api/sessions/({IDENT})/export\\.(csv|json)", ExportHandler, kw),
        (f"{root}/api/sessions/({IDENT})/history", HistoryHandler, kw),
        (f"{root}/ws/student/({IDENT})/({IDENT})", HubRoute, {**kw, "socket": StudentSocket}),
        (f"{root}/ws/teacher/({IDENT})", HubRoute, {**kw, "socket": TeacherSocket}),
    ]
