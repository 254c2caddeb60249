"""The hub's message logic without sockets: parse, validate, authorise, rate-limit and route.

``Connection`` turns one client's raw frames into events or a ``Refusal``; ``ClassRoom`` keeps a class's live state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from smartsession.hub.auth import AuthError, Claims, verify_token
from smartsession.schema import (
    PROTOCOL_VERSION,
    STATE_FIELDS,
    SchemaError,
    Segment,
    Snapshot,
    StateMessage,
    StudentStatus,
    TeacherCommand,
)


class CloseCode(IntEnum):
    """Websocket close codes the hub uses; docs/PROTOCOL.md lists them with their reasons."""

    BAD_JSON = 4000  # not JSON text (or a binary frame)
    BAD_MESSAGE = 4001  # JSON that breaks the schema: wrong type, out of range, unknown field
    UNKNOWN_TYPE = 4002  # a ``type`` the hub does not know
    AUTH_FAILED = 4003  # missing, malformed, forged, expired or other-server token
    FORBIDDEN = 4004  # a valid token, but not for this endpoint, class or student
    RATE_LIMITED = 4008  # more messages than the per-connection budget
    TOO_BIG = 4009  # a message above ``max_message_bytes``
    HELLO_TIMEOUT = 4010  # no ``hello`` in time after connecting
    PROTOCOL = 4011  # messages out of order (e.g. anything before ``hello``, or two hellos)
    REPLACED = 4012  # the same student connected again; the older connection is closed
    DEAD = 4013  # no pong or message for too long


class Refusal(Exception):
    """Close the connection with ``code`` and a short ``reason`` (at most 123 bytes, as websockets allow)."""

    def __init__(self, code: CloseCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:123].decode(errors="ignore")


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 4096
    rate: float = 20.0  # messages per second, sustained
    burst: float = 40.0  # messages allowed at once


@dataclass(frozen=True)
class Hello:
    claims: Claims


@dataclass(frozen=True)
class Stale:
    """A state whose seq is not above the last accepted one: dropped, the client is told (no close)."""

    seq: int
    last_seq: int


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Connection:
    """One websocket's protocol state: ``receive`` returns an event or raises :class:`Refusal`.

    ``role`` is the endpoint ("student" or "teacher"); ``class_id``/``student_id`` come from its path.
    """

    def __init__(
        self,
        role: str,
        class_id: str,
        student_id: str | None,
        secret: str,
        limits: Limits,
        now: float,
    ):
        self.role, self.class_id, self.student_id = role, class_id, student_id
        self.secret, self.limits = secret, limits
        self.bucket = TokenBucket(limits.rate, limits.burst, now)
        self.claims: Claims | None = None
        self.last_seq = -1
        self.verbatim = False

    @property
    def authenticated(self) -> bool:
        return self.claims is not None

    def receive(self, data: str | bytes, now: float) -> Hello | StateMessage | TeacherCommand | Stale:
        if isinstance(data, bytes):
            raise Refusal(CloseCode.BAD_JSON, "binary frames are not accepted: send JSON text")
        if len(data) > self.limits.max_message_bytes:
            raise Refusal(CloseCode.TOO_BIG, f"message larger than {self.limits.max_message_bytes} bytes")
        if not self.bucket.take(now):
            raise Refusal(
                CloseCode.RATE_LIMITED, f"more than {self.limits.rate:g} messages/s: publish less often"
            )
        try:
            msg = json.loads(data)
        except ValueError:
            raise Refusal(CloseCode.BAD_JSON, "malformed JSON") from None
        if not isinstance(msg, dict):
            raise Refusal(CloseCode.BAD_MESSAGE, "message must be a JSON object")
        kind = msg.get("type")
        if kind == "hello":
            return self._hello(msg)
        if kind not in ("state", "command"):
            raise Refusal(CloseCode.UNKNOWN_TYPE, f"unknown message type {str(kind)[:40]!r}")
        if self.claims is None:
            raise Refusal(CloseCode.PROTOCOL, "send hello with your token first")
        if kind == "state":
            return self._state(msg)
        return self._command(msg)

    def _hello(self, msg: dict[str, Any]) -> Hello:
        if self.claims is not None:
            raise Refusal(CloseCode.PROTOCOL, "hello sent twice")
        if msg.get("v") != PROTOCOL_VERSION:
            raise Refusal(CloseCode.BAD_MESSAGE, f"protocol version must be {PROTOCOL_VERSION}: update smartsession")
        if set(msg) - {"type", "v", "token"}:
            raise Refusal(CloseCode.BAD_MESSAGE, "hello takes only type, v and token")
        try:
            claims = verify_token(self.secret, msg.get("token"))
        except AuthError as exc:
            raise Refusal(CloseCode.AUTH_FAILED, str(exc)) from None
        if claims.role != self.role:
            raise Refusal(CloseCode.FORBIDDEN, f"a {claims.role} token cannot open the {self.role} endpoint")
        if claims.class_id != self.class_id:
            raise Refusal(CloseCode.FORBIDDEN, "token is for another class")
        if self.role == "student" and claims.student_id != self.student_id:
            raise Refusal(CloseCode.FORBIDDEN, "token is for another student")
        self.claims = claims
        return Hello(claims)

    def _state(self, msg: dict[str, Any]) -> StateMessage | Stale:
        if self.role != "student":
            raise Refusal(CloseCode.FORBIDDEN, "teachers cannot publish states")
        try:
            state = StateMessage.from_dict(msg)
        except SchemaError as exc:
            raise Refusal(CloseCode.BAD_MESSAGE, str(exc)) from None
        if state.class_id != self.class_id:
            raise Refusal(CloseCode.FORBIDDEN, "state is for another class")
        if state.student_id != self.student_id:
            raise Refusal(CloseCode.FORBIDDEN, "state is for another student")
        if state.seq <= self.last_seq:
            return Stale(state.seq, self.last_seq)
        self.last_seq = state.seq
        # Every field present: the raw text may be forwarded verbatim (see Hub.accept_state).
        self.verbatim = len(msg) == len(STATE_FIELDS)
        return state

    def _command(self, msg: dict[str, Any]) -> TeacherCommand:
        if self.role != "teacher":
            raise Refusal(CloseCode.FORBIDDEN, "students cannot send teacher commands")
        try:
            return TeacherCommand.from_dict(msg)
        except SchemaError as exc:
            raise Refusal(CloseCode.BAD_MESSAGE, str(exc)) from None


def dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


@dataclass
class ClassRoom:
    """A class's live state: students, presence, latest states, the open session and segment.

    Every change is an *event* (a dict ready to send to teachers); ``apply`` folds events from this hub
    and from other hubs alike, so two hubs sharing a backplane converge on the same room.
    """

    class_id: str
    title: str = ""
    session_id: str | None = None
    segment: Segment | None = None
    emotions: bool = True
    students: dict[str, StudentStatus] = field(default_factory=dict)
    segment_count: int = 0

    def snapshot(self) -> Snapshot:
        return Snapshot(
            class_id=self.class_id,
            title=self.title,
            session_id=self.session_id,
            segment=self.segment,
            emotions=self.emotions,
            students=list(self.students.values()),
        )

    def status_event(self) -> dict[str, Any]:
        """The ``class`` event: what students stamp their states with and teachers show."""
        return {
            "type": "class",
            "v": PROTOCOL_VERSION,
            "class_id": self.class_id,
            "title": self.title,
            "session_id": self.session_id,
            "segment": self.segment.to_dict() if self.segment else None,
            "emotions": self.emotions,
        }

    def student(self, student_id: str) -> StudentStatus:
        s = self.students.get(student_id)
        if s is None:
            s = self.students[student_id] = StudentStatus(student_id)
        return s

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "state":
            s = self.student(event["student_id"])
            s.state = event
            s.last_seen = event["received"]
            if s.presence != "disconnected":
                s.presence = "paused" if event.get("paused") else "connected"
        elif kind == "presence":
            s = self.student(event["student_id"])
            s.presence, s.last_seen = event["presence"], event["last_seen"]
            if event.get("name"):
                s.name = event["name"]
        elif kind == "student":
            s = self.student(event["student_id"])
            s.name, s.hidden = event["name"], event["hidden"]
        elif kind == "class":
            if event["session_id"] != self.session_id:
                self.segment_count = 0
            self.title = event["title"]
            self.session_id = event["session_id"]
            seg = event["segment"]
            self.segment = Segment(**seg) if seg else None
            if seg:
                self.segment_count = max(self.segment_count, int(seg["segment_id"].removeprefix("seg")))
            self.emotions = event["emotions"]

    # Local changes: each builds its event, applies it and returns it for fan-out and the backplane.

    def state_event(self, msg: StateMessage, received: float) -> dict[str, Any]:
        event = msg.to_dict()
        event["received"] = received
        self.apply(event)
        return event

    def presence_event(self, student_id: str, presence: str, now: float, name: str = "") -> dict[str, Any]:
        event = {
            "type": "presence",
            "student_id": student_id,
            "presence": presence,
            "last_seen": now,
            "name": name or self.student(student_id).name,
        }
        self.apply(event)
        return event

    def connect(self, student_id: str, name: str, now: float) -> dict[str, Any]:
        latest = self.student(student_id).state
        presence = "paused" if latest and latest.get("paused") else "connected"
        return self.presence_event(student_id, presence, now, name)

    def command(self, cmd: TeacherCommand, now: float, new_session_id) -> list[dict[str, Any]]:
        """Apply a teacher command; return the events it caused (``new_session_id()`` names sessions)."""
        if cmd.command in ("rename_student", "hide_student"):
            if cmd.student_id not in self.students:
                raise KeyError(f"no student {cmd.student_id} in this class")
            s = self.students[cmd.student_id]
            event = {
                "type": "student",
                "student_id": s.student_id,
                "name": cmd.name if cmd.name is not None else s.name,
                "hidden": cmd.hidden if cmd.hidden is not None else s.hidden,
            }
            self.apply(event)
            return [event]
        if cmd.command == "start_session":
            self.session_id, self.segment, self.segment_count = new_session_id(), None, 0
        elif cmd.command == "end_session":
            self.session_id, self.segment = None, None
        elif cmd.command == "start_segment":
            if self.session_id is None:
                self.session_id, self.segment_count = new_session_id(), 0
            self._start_segment(cmd.title, now)
        elif cmd.command == "set_emotions":
            self.emotions = cmd.emotions
        return [self.status_event()]

    def _start_segment(self, title: str, now: float) -> None:
        self.segment_count += 1
        self.segment = Segment(f"seg{self.segment_count}", title, now)

    def ensure_session(self, new_session_id) -> dict[str, Any] | None:
        """A class always has a session: open one implicitly when a student arrives and none is open."""
        if self.session_id is not None:
            return None
        self.session_id, self.segment, self.segment_count = new_session_id(), None, 0
        return self.status_event()
