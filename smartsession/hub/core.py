"""The hub's core: class rooms, who is connected, what a state or a command does, what gets stored.

No sockets here: ``hub.server`` turns bytes into calls on ``Hub`` (``attach_student``, ``accept_state``,
``command``...) and the hub answers through the ``Peer`` methods each connection offers (send, enqueue, close).
"""

from __future__ import annotations

import asyncio
import math
import logging
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol

from tornado.ioloop import PeriodicCallback

from smartsession import __version__
from smartsession.hub import auth
from smartsession.hub.backplane import make_backplane
from smartsession.hub.checkins import CHECKIN_EVENTS, STUDENT_EVENTS, CheckinBook, CheckinLimits, CheckinRefused
from smartsession.hub.config import HubConfig
from smartsession.hub.httpserver import connection_cap
from smartsession.hub.protocol import (
    CloseCode,
    Connection,
    ConnectionLimiter,
    HttpRefusal,
    JoinGate,
    JoinLimits,
    Limits,
    QuietLog,
    RateBuckets,
    TeacherSeats,
    dumps,
    nack,
)
from smartsession.hub.room import ClassRoom
from smartsession.hub.pgstore import open_store
from smartsession.hub.store import Store, private_dir, private_warnings
from smartsession.hub.wire import keep
from smartsession.schema import (
    PROTOCOL_VERSION,
    CheckinAnswer,
    CheckinAsk,
    StateMessage,
    TeacherCommand,
    clean_title,
)

log = logging.getLogger("smartsession.hub")

#: Students who joined and have not connected yet that the hub remembers (see ``Hub._newcomers``).
MAX_NEWCOMERS = 10_000


class Peer(Protocol):
    """What the hub needs of a connection (``hub.server``'s sockets are the real ones)."""

    role: str
    conn: Connection | None
    class_id: str
    last_alive: float
    last_ping: float

    def send(self, text: str) -> None: ...
    def enqueue(self, text: str) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def on_close(self) -> None: ...
    def ping(self) -> None: ...


class AckPacer:
    """Sends each commit's acks a few dozen per loop turn, so states arriving meanwhile are not held up.

    One commit acknowledges every publishing student at once: a thousand frames in one callback held the
    hub's loop for 20-30 ms twice a second, and landed on the clients as one burst.
    """

    per_turn = 50
    pause = 0.002  # seconds between turns: 1000 acks spread over ~40 ms

    def __init__(self) -> None:
        self.queue: deque[tuple["Peer", int]] = deque()
        self.running = False

    def add(self, acks: list[tuple["Peer", int]]) -> None:
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

    max_held = 2000  # states per class that wait for a session being opened (a class's states for a few seconds)

    def __init__(self, config: HubConfig | None = None, *, store: Store | None = None, backplane: Any = None,
                 **settings: Any):
        self.config = config if config is not None else HubConfig(**settings)
        self.health_extras: dict[str, Callable[[], Any]] = {}
        self.rooms: dict[str, ClassRoom] = {}
        self.students: dict[tuple[str, str], Peer] = {}
        self.teachers: dict[str, set[Peer]] = {}
        self.pending: set[Peer] = set()
        # Given, or opened at start from the config (SQLite in data_dir, or store_url); the hub closes it at stop.
        self.store: Store | None = store
        self.secret = ""
        self.admin_token = ""
        self.started = False
        c = self.config
        self.limits = Limits.of(c)
        # One set of buckets for every limit keyed by who (student, class, address): reconnecting resets none.
        self.buckets = RateBuckets()
        self.joins = JoinGate(JoinLimits.of(c), self.buckets)
        self.seats = TeacherSeats(c.max_teachers_per_token, c.max_teachers_per_class)
        self.connections = ConnectionLimiter(c.max_connections, c.max_connections_per_address,
                                             set(c.trusted_addresses))
        self.quiet = QuietLog(log.info)  # client mistakes: one line each, at most 20 per 10 s
        self.class_sizes: dict[str, int] = {}
        self.lag = LoopLag()
        self._loading: dict[str, asyncio.Future] = {}
        # Events other hubs sent while a class's room was loading here, applied once it is loaded (else one that
        # came after the room's hash was read, such as the class's first status, was lost on this node).
        self._early: dict[str, list[tuple[dict[str, Any], str]]] = {}
        # Students who joined and have not connected yet: their arrival opens a session even after the teacher
        # ended one (a new lesson), where a reconnect does not. Bounded: joins are limited, the oldest go first.
        self._newcomers: dict[tuple[str, str], None] = {}
        self._opening: dict[str, asyncio.Future] = {}  # class_id: the shared store opening its session
        self._held: dict[str, list[tuple[Peer, StateMessage]]] = {}  # states waiting for that session
        self._ended: dict[str, str] = {}  # class_id: the session a teacher ended last, never to be reopened
        self._exports: asyncio.Semaphore | None = None
        self._swept_buckets = 0.0
        self.backplane = backplane if backplane is not None else make_backplane(c.redis_url)
        self.acks = AckPacer()
        self.checkin_limits = CheckinLimits.of(c)
        self.checkins: dict[str, CheckinBook] = {}  # class_id: its check-ins (the open one, who answered)

    async def __aenter__(self) -> "Hub":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.started:
            return
        data_dir = private_dir(Path(self.config.data_dir).expanduser())
        loop = asyncio.get_running_loop()
        on_acks = lambda acks: loop.call_soon_threadsafe(self.acks.add, acks)  # noqa: E731
        if self.store is None:
            # Opening checks the connection and migrates the schema: off the loop.
            self.store = await loop.run_in_executor(None, lambda: open_store(
                self.config.store_url or str(data_dir), batch_seconds=self.config.commit_interval, on_acks=on_acks))
        else:
            self.store.on_acks = on_acks
        try:
            self.secret, self.admin_token = await loop.run_in_executor(
                None, self.store.credentials, self.config.secret, data_dir)
        except Exception:
            self.store.close()
            raise
        for warning in private_warnings(data_dir):
            log.warning("%s", warning)
        try:
            await self.backplane.start(self._on_remote_event, self._republish, self.secret)
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

    def create_class_for(self, claims: auth.Claims, title: str) -> dict[str, Any]:
        """``create_class`` asked for with a token: within ``max_classes`` in all and ``max_classes_per_token``
        per teacher token, counted in the store (so across restarts and, with a shared store, across nodes).
        Raises ``HttpRefusal``; blocks on the store: call it off the loop."""
        if self.store.class_count() >= self.config.max_classes:
            raise HttpRefusal(429, f"this server holds {self.config.max_classes} classes, its most "
                                   "(--HubConfig.max_classes): remove old ones or raise the limit")
        if claims.role == "teacher":
            most = self.config.max_classes_per_token
            if self.store.count_up(f"classes_made:{claims.class_id}:{claims.issued!r}", most) is None:
                raise HttpRefusal(429, f"this teacher link created {most} classes, its most: ask whoever runs "
                                       "the server (the admin token) for more")
        return self.create_class(title)

    def create_class(self, title: str) -> dict[str, Any]:
        """A new class: id, teacher token, join code and the page paths for both. Blocks on a commit."""
        title = clean_title(title, "title")
        class_id = auth.new_class_id()
        self.store.add_class(class_id, title)
        self.store.flush()  # the teacher's page loads the class right after
        return class_links(self.secret, class_id, title)

    def rotate_teacher_token(self, class_id: str) -> dict[str, Any]:
        """Revoke every teacher token of the class issued so far and return its links with a new one. Blocks on
        a commit: call it off the loop, then :meth:`announce_revocation` on it."""
        info = self.store.class_info(class_id)
        if info is None:
            raise KeyError(f"no class {class_id!r}")
        revoke_teacher_tokens(self.store, class_id)
        return class_links(self.secret, class_id, info["title"])

    async def announce_revocation(self, class_id: str) -> None:
        """After a rotation (committed): close the class's teacher pages on this hub whose token it revoked, and
        tell the other hubs to do the same. The event only makes them look in the store, which every node
        shares: who is revoked is never taken from the backplane."""
        self.backplane.publish(class_id, {"type": "revoked", "class_id": class_id},
                               dumps({"type": "revoked", "class_id": class_id}))
        await self.close_revoked_teachers(class_id)

    async def close_revoked_teachers(self, class_id: str) -> None:
        """Close (4003) this hub's teacher sockets of the class whose token the store says was rotated away."""
        for teacher in list(self.teachers.get(class_id, ())):
            claims = teacher.conn.claims if teacher.conn is not None else None
            if claims is not None and not await self.teacher_token_current(claims):
                teacher.close(CloseCode.AUTH_FAILED, REPLACED_LINK)

    async def teacher_token_current(self, claims: auth.Claims) -> bool:
        """Whether a verified teacher token was issued after its class's last rotation (read off the loop)."""
        if claims.role != "teacher" or claims.class_id is None:
            return True
        key = teacher_not_before_key(claims.class_id)
        not_before = await asyncio.get_running_loop().run_in_executor(None, self.store.setting, key)
        return not_before is None or (claims.issued or 0.0) >= float(not_before)

    def default_class(self, title: str) -> dict[str, Any]:
        """``smartsession serve``'s class on first start: a new class, or with a shared store the one the first
        node created (every node of a deployment offers the same). Blocks on the store: call it off the loop."""
        title = clean_title(title, "title")
        class_id = self.store.default_class_id(auth.new_class_id)
        self.store.add_class(class_id, title)  # with a shared store, the first node's title stays
        self.store.flush()
        return class_links(self.secret, class_id, self.store.class_info(class_id)["title"])

    def join(self, class_id: str, code: str, name: str, student_id: str | None = None) -> dict[str, Any]:
        """Check the join code and give the student a server-chosen id (or the one a seat token named) and a
        signed token (no rate limits)."""
        auth.check_join_code(self.secret, class_id, code)
        name = clean_title(name, "name")
        student_id = student_id or auth.new_student_id()
        self.store.add_class(class_id, "")
        self.store.add_student(class_id, student_id, name)
        self._newcomers[(class_id, student_id)] = None
        while len(self._newcomers) > MAX_NEWCOMERS:
            del self._newcomers[next(iter(self._newcomers))]
        return {
            "class_id": class_id,
            "student_id": student_id,
            "name": name,
            "token": auth.student_token(self.secret, class_id, student_id, name=name),
        }

    async def join_limited(self, class_id: Any, code: Any, name: Any, address: str,
                           seat: Any = None) -> dict[str, Any]:
        """``join`` behind the limits: attempts per address, joins per class, students per class.

        ``seat`` (a seat token, ``auth.seat_token``: what ``smartsession serve`` gives a page's kernel) names the
        student id the page's seat keeps: a student who joined with it already rejoins (same id, a fresh token,
        the name typed now; neither a new student nor a join the class's rate counts), else they join with that id.
        Raises ``HttpRefusal`` (429/503), ``auth.AuthError`` (wrong code or seat) or ``ValueError`` (bad name).
        """
        now = time.monotonic()
        self.joins.attempt(address, now, trusted=address in self.connections.trusted)
        auth.check_join_code(self.secret, class_id, code)
        name = clean_title(name, "name")
        student_id = None
        if seat is not None:
            student_id = auth.seat_student(self.secret, seat, class_id)
            known = await asyncio.get_running_loop().run_in_executor(None, self._joined, class_id, student_id)
            if known is not None:
                return self._rejoin(class_id, student_id, name, *known)
        if class_id not in self.class_sizes:
            n = await asyncio.get_running_loop().run_in_executor(None, self.store.count_students, class_id)
            self.class_sizes.setdefault(class_id, n)
        size = self.class_sizes[class_id]
        self.joins.admit(class_id, size, now)
        self.class_sizes[class_id] = size + 1
        return self.join(class_id, code, name, student_id)

    def _joined(self, class_id: str, student_id: str) -> tuple[str, bool] | None:
        """Runs in an executor: the student's name and hidden flag if they joined (after a flush: a join a moment
        ago must count)."""
        self.store.flush()
        return self.store.class_student(class_id, student_id)

    def _rejoin(self, class_id: str, student_id: str, name: str, was: str, hidden: bool) -> dict[str, Any]:
        """The same student again (a reloaded page): a new name is a rename, as the teacher's would be."""
        room = self.rooms.get(class_id)
        if room is not None and student_id in room.students:
            was, hidden = room.students[student_id].name, room.students[student_id].hidden
        if name != was:
            event = {"type": "student", "student_id": student_id, "name": name, "hidden": hidden}
            self.store.update_student(class_id, student_id, name, hidden)
            if room is not None:
                room.apply(event)
            self._broadcast(class_id, event)
        return {"class_id": class_id, "student_id": student_id, "name": name,
                "token": auth.student_token(self.secret, class_id, student_id, name=name)}

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
        if not opened and len(store.sessions(class_id)):
            # Restarted after the teacher ended the last lesson: a teacher page reopened now must not open an
            # empty one (its report would have no measurements); the next student to join opens the next.
            room.ended = True
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
        self._early[class_id] = []
        try:
            await self.backplane.watch(class_id)
            room = await asyncio.get_running_loop().run_in_executor(None, self._read_room, class_id)
            events = await self.backplane.load(class_id)
        finally:
            early = self._early.pop(class_id)
        if class_id in self.rooms:
            return self.rooms[class_id]
        for event in events:
            room.apply(event)
        self.rooms[class_id] = room
        # After the hash: each of these was published (and written to the hash) no earlier than what the hash
        # holds for its field, so applied in order they leave every field at its latest.
        for event, text in early:
            self._on_remote_event(class_id, event, text)
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

    def _broadcast(self, class_id: str, event: dict[str, Any], text: str | None = None) -> None:
        """Send an event to the class's teachers (and, for ``class`` events, its students); this hub's own events
        (no ``text`` yet) go to the other hubs too, in the one serialisation everybody gets."""
        remote = text is not None
        if text is None:
            text = dumps(event)
        for teacher in self.teachers.get(class_id, ()):
            teacher.enqueue(text)
        if event["type"] == "class" or event["type"] in STUDENT_EVENTS:
            for (cid, _), student in self.students.items():
                if cid == class_id:
                    student.send(text)
        if not remote:
            self.backplane.publish(class_id, event, text)

    def _republish(self) -> None:
        """After a backplane outage: what this hub's own students and teachers did, for the other hubs; and its
        teachers' tokens checked again (a rotation announced meanwhile was lost with the outage)."""
        now = time.time()
        for class_id in [c for c, ts in self.teachers.items() if ts]:
            keep(asyncio.ensure_future(self.close_revoked_teachers(class_id)))
        for class_id, room in self.rooms.items():
            mine = [sid for cid, sid in self.students if cid == class_id]
            if not mine and not self.teachers.get(class_id):
                continue
            events = [room.status_event()]
            for student_id in mine:
                events.append(room.connect(student_id, room.student(student_id).name, now))
                if room.students[student_id].state is not None:
                    events.append(room.students[student_id].state)
            for event in events:
                self.backplane.publish(class_id, event, dumps(event))

    def _on_remote_event(self, class_id: str, event: dict[str, Any], text: str) -> None:
        if event["type"] == "revoked":
            if self.teachers.get(class_id):
                keep(asyncio.ensure_future(self.close_revoked_teachers(class_id)))
            return
        room = self.rooms.get(class_id)
        if room is None:
            early = self._early.get(class_id)
            if early is not None and len(early) < MAX_EARLY_EVENTS:
                early.append((event, text))
            return  # else loaded from the backplane's hash when someone here needs it
        if event["type"] == "class" and event["session_id"] is None and room.session_id is not None:
            self._ended[class_id] = room.session_id
        if event["type"] in CHECKIN_EVENTS:
            self.book(class_id).apply(event)
        room.apply(event)
        self._broadcast(class_id, event, text)

    def ensure_session(self, room: ClassRoom, now: float) -> None:
        """Open a session implicitly when a student arrives and none is open.

        With a shared store every node must use the same one: the database picks it, off the loop, and states
        that arrive meanwhile wait for it (``accept_state``)."""
        if room.session_id is not None or room.ended:
            return
        if self.store.shared:
            self._open_shared_session(room)
            return
        event = room.ensure_session(self._new_session_id)
        self.store.start_session(room.class_id, room.session_id, now)
        self._broadcast(room.class_id, event)

    def _open_shared_session(self, room: ClassRoom) -> None:
        class_id = room.class_id
        if class_id in self._opening:
            return
        store, session_id = self.store, self._new_session_id()
        opening = self._opening[class_id] = keep(asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(
            None, store.open_class_session, class_id, session_id, time.time(), self._ended.get(class_id))))
        opening.add_done_callback(lambda done: self._shared_session_opened(room, done))

    def _shared_session_opened(self, room: ClassRoom, done: asyncio.Future) -> None:
        del self._opening[room.class_id]
        held = self._held.pop(room.class_id, [])
        if done.cancelled() or not self.started:
            return
        if done.exception() is not None:
            # Unacknowledged: their students keep them; the next state or arrival tries again.
            log.warning("could not open a session for class %s (%s): %d states dropped unacknowledged",
                        room.class_id, done.exception(), len(held))
            return
        session_id = done.result()
        event = room.ensure_session(lambda: session_id)  # None: a class event named one, or ended it, meanwhile
        if event is not None:
            self._broadcast(room.class_id, event)
        for handler, msg in held:
            self.accept_state(handler, msg)

    # --- connections ---

    async def stored_seq(self, class_id: str, student_id: str) -> int | None:
        """With a shared store, the student's highest committed seq, read off the loop; else None.

        A room learns other nodes' states before they commit, and a node can die between the two: a student
        failing over must be told to resend from what is stored, not from what was relayed. (Resends that
        were stored after all land once: the shared store ignores a repeated seq.)
        """
        if not self.store.shared:
            return None  # no other hub writes to it: the live room knows every committed state
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, self.store.stored_seq, class_id, student_id)
        except Exception as exc:
            log.warning("could not read %s's stored seq (%s): welcoming from the live room", student_id, exc)
            return None

    def attach_student(self, handler: "Peer", room: ClassRoom, claims: auth.Claims,
                       stored_seq: int | None = None) -> dict[str, Any]:
        now = time.time()
        key = (room.class_id, handler.conn.student_id)
        if self._newcomers.pop(key, False) is None and room.ended:
            room.ended = False  # a student joining anew after the teacher ended the session: the next lesson
        self.ensure_session(room, now)
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
        if stored_seq is not None:
            last_seq = stored_seq
        handler.conn.last_seq = last_seq
        return {**room.status_event(), "type": "welcome", "student_id": s.student_id, "name": s.name,
                "last_seq": last_seq, "checkin": self.book(room.class_id).status(s.student_id)}

    def detach_student(self, handler: "Peer") -> None:
        key = (handler.conn.class_id, handler.conn.student_id)
        if self.students.get(key) is not handler:
            return  # replaced, or never authenticated
        del self.students[key]
        room = self.rooms.get(key[0])
        if room is not None:
            self._broadcast(key[0], room.presence_event(key[1], "disconnected", time.time()))

    def attach_teacher(self, handler: "Peer", room: ClassRoom) -> None:
        """Seat a teacher socket (raises ``Refusal`` past the class's cap; closes the token's oldest past its own)."""
        for old in self.seats.admit(room.class_id, handler.conn.token, handler):
            old.close(CloseCode.REPLACED,
                      f"this teacher link is open in more than {self.config.max_teachers_per_token} pages: "
                      "the oldest was closed")
            old.on_close()
        # A teacher's page opening starts no lesson: the teacher's Start lesson (or a plan item) or the first
        # student to join does, so the page can offer Start lesson before the class arrives.
        self.teachers.setdefault(room.class_id, set()).add(handler)

    def detach_teacher(self, handler: "Peer") -> None:
        self.seats.leave(handler.class_id, handler)
        self.teachers.get(handler.class_id, set()).discard(handler)

    def accept_state(self, handler: "Peer", msg: StateMessage, received: float | None = None) -> None:
        """Route a validated state: teachers first, then the backplane and the store (ack after commit).

        Teachers get the hub's own serialisation of what it validated, never the client's text: that text
        may repeat keys or carry anything the validated object does not. ``received`` is when it arrived on the
        hub's clock (now, unless a batch says how much earlier each of its frames was captured).
        """
        room = self.rooms[msg.class_id]
        if not room.known_segment(msg.segment):
            handler.send(nack(msg.seq, handler.conn.last_seq, f"unknown segment {msg.segment!r}: dropped"))
            return
        if room.session_id is None and room.ended:
            handler.send(nack(msg.seq, handler.conn.last_seq, "the teacher ended the session: not recorded"))
            return
        now = time.time() if received is None else received
        if room.session_id is None:
            self.ensure_session(room, now)
            if room.session_id is None:  # the shared store is opening one
                held = self._held.setdefault(room.class_id, [])
                if len(held) < self.max_held:
                    held.append((handler, msg))
                return  # past the bound: unacknowledged, its student keeps it
        event = room.state_event(msg, now)
        if event["segment"] is None and room.segment is not None:
            event["segment"] = room.segment.segment_id  # stamped late: the student had not heard of it yet
        text = dumps(event)
        for teacher in self.teachers.get(msg.class_id, ()):
            teacher.enqueue(text)
        self.backplane.publish(msg.class_id, event, text)
        self.store.add_state(room.session_id, event, ack=(handler, msg.seq))

    def command(self, room: ClassRoom, cmd: TeacherCommand) -> dict[str, Any]:
        now = time.time()
        before = room.session_id
        if cmd.command == "start_segment" and room.session_id is not None \
                and room.segment_count >= self.config.max_segments:
            return {"type": "result", "id": cmd.id, "ok": False,
                    "error": f"this session has {room.segment_count} segments, the most it may have: "
                             "start a new session for more"}
        try:
            events = room.command(cmd, now, self._new_session_id)
        except KeyError as exc:
            return {"type": "result", "id": cmd.id, "ok": False, "error": exc.args[0]}
        store = self.store
        if cmd.command == "end_session" or room.session_id != before:
            self._close_checkin(room.class_id, self.book(room.class_id).end_session(now))
        if cmd.command == "end_session":
            store.end_session(room.class_id, now, before)
            if before is not None:
                self._ended[room.class_id] = before
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

    # --- check-ins ---

    def book(self, class_id: str) -> CheckinBook:
        book = self.checkins.get(class_id)
        if book is None:
            book = self.checkins[class_id] = CheckinBook(self.checkin_limits)
        return book

    def ask(self, room: ClassRoom, ask: CheckinAsk) -> dict[str, Any]:
        """A teacher's check-in: to every student of the class and its teachers, and to the store."""
        try:
            events = self.book(room.class_id).ask(
                ask, room.session_id, room.segment.segment_id if room.segment else None, time.time(),
                time.monotonic())
        except CheckinRefused as exc:
            return {"type": "result", "id": ask.id, "ok": False, "error": str(exc)}
        for event in events:
            if event["type"] == "checkin_closed":
                self._close_checkin(room.class_id, event)
            else:
                self.store.add_checkin(room.class_id, event)
                self._broadcast(room.class_id, event)
        return {"type": "result", "id": ask.id, "ok": True, "checkin_id": events[-1]["checkin_id"]}

    def answer(self, handler: "Peer", answer: CheckinAnswer) -> None:
        """A student's answer: stored and shown to the teachers, or refused to the student alone (no close: a
        late answer is a slow network, not an attack; the student's message budget bounds a flood)."""
        class_id, student_id = handler.conn.class_id, handler.conn.student_id
        try:
            event = self.book(class_id).answer(student_id, answer, time.time())
        except CheckinRefused as exc:
            handler.send(dumps({"type": "answer_refused", "checkin_id": answer.checkin_id, "reason": str(exc)}))
            return
        self.store.add_answer(class_id, event)
        self._broadcast(class_id, event)
        handler.send(dumps({"type": "answer_ok", "checkin_id": answer.checkin_id}))

    def _close_checkin(self, class_id: str, event: dict[str, Any] | None) -> None:
        if event is None:
            return
        self.store.close_checkin(event["session_id"], event["checkin_id"], event["closed"])
        self._broadcast(class_id, event)

    def _sweep(self) -> None:
        wall = time.time()
        for class_id, book in self.checkins.items():
            self._close_checkin(class_id, book.due(wall))
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


#: Events from other hubs kept for a class while its room loads (a class of 500 sends about that many a second).
MAX_EARLY_EVENTS = 5000

#: What a teacher hears when their link's token was rotated away.
REPLACED_LINK = "this teacher link was replaced: open the new link (smartsession class rotate-token prints it)"


def teacher_not_before_key(class_id: str) -> str:
    """The store setting holding when the class's teacher tokens were last rotated (unix time)."""
    return f"teacher_not_before:{class_id}"


def revoke_teacher_tokens(store: Store, class_id: str) -> None:
    """From now on the class's teacher tokens issued before this moment are refused; committed on return."""
    not_before = math.floor(time.time() * 1000) / 1000  # tokens carry their issue time to the millisecond
    store.set_shared_setting(teacher_not_before_key(class_id), repr(not_before))
    store.flush()


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

