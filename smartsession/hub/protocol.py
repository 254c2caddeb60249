"""The hub's message logic without sockets: parse, validate, authorise, rate-limit and route.

``Connection`` turns one client's raw frames into events or a ``Refusal`` (a class's live state is ``room.ClassRoom``).
The limits that hold across connections live here too, as plain objects fed with the time: ``RateBuckets`` (token
buckets keyed by who sends, so reconnecting resets nothing), ``JoinGate`` (joins per address and class, students per
class), ``TeacherSeats`` (teacher sockets per token and class) and ``ConnectionLimiter`` (open connections per
address and in all). ``parse_json`` bounds nesting before decoding and refuses duplicate keys.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Callable, Hashable

from smartsession.hub.auth import AuthError, Claims, verify_token
from smartsession.schema import (
    PROTOCOL_VERSION,
    CheckinAnswer,
    CheckinAsk,
    SchemaError,
    StateBatch,
    StateMessage,
    TeacherCommand,
)


class CloseCode(IntEnum):
    """Websocket close codes the hub uses; docs/PROTOCOL.md lists them with their reasons."""

    BAD_JSON = 4000  # not JSON text (or a binary frame)
    BAD_MESSAGE = 4001  # JSON that breaks the schema: wrong type, out of range, unknown field
    UNKNOWN_TYPE = 4002  # a ``type`` the hub does not know
    AUTH_FAILED = 4003  # missing, malformed, forged, expired or other-server token
    FORBIDDEN = 4004  # a valid token, but not for this endpoint, class or student
    RATE_LIMITED = 4008  # more messages than the student's, class's or connection's budget
    TOO_BIG = 4009  # a message above ``max_message_bytes``
    HELLO_TIMEOUT = 4010  # no ``hello`` in time after connecting
    PROTOCOL = 4011  # messages out of order (e.g. anything before ``hello``, or two hellos)
    REPLACED = 4012  # the same student (or teacher token, past its cap) connected again; the oldest is closed
    DEAD = 4013  # no pong or message for too long, or too far behind reading what the hub sends
    TOO_MANY = 4014  # a cap was reached (teacher pages of a class): try again later


class Refusal(Exception):
    """Close the connection with ``code`` and a short ``reason`` (at most 123 bytes, as websockets allow)."""

    def __init__(self, code: CloseCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:123].decode(errors="ignore")


class HttpRefusal(Exception):
    """Answer an HTTP request with ``status`` and ``reason`` (and ``Retry-After`` when ``retry_after`` is set)."""

    def __init__(self, status: int, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.status, self.reason, self.retry_after = status, reason, retry_after


@dataclass(frozen=True)
class Limits:
    """What one connection may send; each field is the ``HubConfig`` setting of that name (its help says more)."""

    max_message_bytes: int
    # Messages per second, sustained, and at once: per student (kept across reconnects), per connection before
    # hello, and per class for its teachers' commands.
    rate: float
    burst: float
    class_rate: float  # messages per second from all the students of one class together
    class_burst: float
    max_json_depth: int  # nesting of arrays and objects (a state needs 2, a batch of states 4)
    max_clock_skew: float  # seconds a state's ``t`` may be away from the hub's clock
    max_batch_bytes: int  # a ``states`` batch may be this large; every other message stays within max_message_bytes
    # States per second per student, sustained and at once, counted from batches (a batch is also one message).
    state_rate: float
    state_burst: float

    @classmethod
    def of(cls, config: Any) -> "Limits":
        """The limits a ``HubConfig`` sets, read by name."""
        return _of(cls, config)


def _of(cls, config: Any):
    return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


# --- parsing: bounded before decoding, duplicate keys refused ---


class JsonError(ValueError):
    """Text the hub will not decode; ``str(err)`` is safe to show the client."""


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dup)
    return d


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)
_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings do not count); linear time."""
    depth = peak = 0
    in_string = False
    skip = -1
    for m in _JSON_SPECIAL.finditer(text):
        i = m.start()
        if i < skip:
            continue
        c = text[i]
        if in_string:
            if c == "\\":
                skip = i + 2  # the escaped character, whatever it is
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "[" or c == "{":
            depth += 1
            peak = max(peak, depth)
        elif c == "]" or c == "}":
            depth -= 1
    return peak


def parse_json(text: str, max_depth: int = 16) -> Any:
    """Decode ``text``; raise :class:`JsonError` for malformed JSON, nesting deeper than ``max_depth`` or a
    repeated key in an object. Nesting is bounded before the decoder runs, so no input can exhaust its stack."""
    # A bracket count is an upper bound of the depth and costs next to nothing; the exact scan runs only
    # when there are many brackets.
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise JsonError(f"JSON nested deeper than {max_depth} levels")
    try:
        return _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise JsonError(f"duplicate key {str(exc.args[0])[:40]!r} in a JSON object") from None
    except RecursionError:  # unreachable after the depth bound; kept so no input can raise anything else
        raise JsonError("JSON nested too deeply") from None
    except ValueError:
        raise JsonError("malformed JSON") from None


def is_version(v: Any) -> bool:
    """``v`` is this protocol's version as a JSON integer (``true`` and ``1.0`` are not)."""
    return v.__class__ is int and v == PROTOCOL_VERSION


def _skew(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


@dataclass(frozen=True)
class Hello:
    claims: Claims


@dataclass(frozen=True)
class Stale:
    """A state whose seq is not above the last accepted one: dropped, the client is told (no close)."""

    seq: int
    last_seq: int


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "t")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, now

    def take(self, now: float, cost: float = 1) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.t) * self.rate >= self.burst

    def retry_after(self) -> float:
        """Seconds until one token is back."""
        return max(0.0, (1 - self.tokens) / self.rate) if self.rate > 0 else math.inf


class RateBuckets:
    """Token buckets by key (a student, a class, an address...), shared by every connection of that key.

    A bucket outlives the connections that drew on it, so reconnecting refills nothing; ``sweep(now)``
    forgets buckets that have refilled completely (they would start full anyway).
    """

    def __init__(self) -> None:
        self.buckets: dict[Hashable, TokenBucket] = {}

    def take(self, key: Hashable, rate: float, burst: float, now: float, cost: float = 1) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(rate, burst, now)
        return bucket.take(now, cost)

    def retry_after(self, key: Hashable) -> float:
        bucket = self.buckets.get(key)
        return bucket.retry_after() if bucket is not None else 0.0

    def sweep(self, now: float) -> None:
        for key in [k for k, b in self.buckets.items() if b.full(now)]:
            del self.buckets[key]

    def __len__(self) -> int:
        return len(self.buckets)


class Connection:
    """One websocket's protocol state: ``receive`` returns an event or raises :class:`Refusal`.

    ``role`` is the endpoint ("student" or "teacher"); ``class_id``/``student_id`` come from its path.
    Before hello a connection spends its own token bucket; after hello it spends the buckets of who it is,
    in ``buckets`` (shared by the hub's connections): its student's and its class's, or its class's teachers'.
    """

    def __init__(
        self,
        role: str,
        class_id: str,
        student_id: str | None,
        secret: str,
        limits: Limits,
        now: float,
        buckets: RateBuckets | None = None,
    ):
        self.role, self.class_id, self.student_id = role, class_id, student_id
        self.secret, self.limits = secret, limits
        self.bucket = TokenBucket(limits.rate, limits.burst, now)
        self.buckets = buckets if buckets is not None else RateBuckets()
        self.claims: Claims | None = None
        self.token: str | None = None
        self.last_seq = -1
        self._own_key: tuple | None = None
        self._class_key: tuple | None = None

    @property
    def authenticated(self) -> bool:
        return self.claims is not None

    def _spend(self, now: float) -> None:
        limits = self.limits
        if self._own_key is None:
            if not self.bucket.take(now):
                raise Refusal(CloseCode.RATE_LIMITED, f"more than {limits.rate:g} messages/s: publish less often")
            return
        if not self.buckets.take(self._own_key, limits.rate, limits.burst, now):
            who = "this student" if self.role == "student" else "this class's teachers"
            raise Refusal(CloseCode.RATE_LIMITED,
                          f"more than {limits.rate:g} messages/s from {who}: publish less often")
        if self._class_key is not None and not self.buckets.take(
                self._class_key, limits.class_rate, limits.class_burst, now):
            raise Refusal(CloseCode.RATE_LIMITED,
                          f"this class sends more than {limits.class_rate:g} messages/s: try again shortly")

    def receive(
        self, data: str | bytes, now: float, wall: float | None = None
    ) -> Hello | StateMessage | TeacherCommand | CheckinAsk | CheckinAnswer | Stale | list[StateMessage | Stale]:
        """Handle one message; ``now`` is a monotonic clock (rates), ``wall`` the hub's unix time (``t`` checks).
        A ``states`` batch gives a list: each state, or its ``Stale`` note, in order."""
        if isinstance(data, bytes):
            raise Refusal(CloseCode.BAD_JSON, "binary frames are not accepted: send JSON text")
        limits = self.limits
        # Only a batch of states may be larger than max_message_bytes; anything else that large is refused unread.
        if len(data) > limits.max_message_bytes and (len(data) > limits.max_batch_bytes or '"states"' not in data):
            limit = limits.max_batch_bytes if '"states"' in data else limits.max_message_bytes
            raise Refusal(CloseCode.TOO_BIG, f"message larger than {limit} bytes")
        self._spend(now)
        try:
            msg = parse_json(data, self.limits.max_json_depth)
        except JsonError as exc:
            raise Refusal(CloseCode.BAD_JSON, str(exc)) from None
        if not isinstance(msg, dict):
            raise Refusal(CloseCode.BAD_MESSAGE, "message must be a JSON object")
        kind = msg.get("type")
        if len(data) > limits.max_message_bytes and kind != "states":
            raise Refusal(CloseCode.TOO_BIG, f"message larger than {limits.max_message_bytes} bytes")
        if kind == "hello":
            return self._hello(msg)
        if kind not in ("state", "states", "command", "ask", "answer"):
            raise Refusal(CloseCode.UNKNOWN_TYPE, f"unknown message type {str(kind)[:40]!r}")
        if self.claims is None:
            raise Refusal(CloseCode.PROTOCOL, "send hello with your token first")
        if kind == "state":
            return self._state(msg, time.time() if wall is None else wall)
        if kind == "states":
            return self._states(msg, now, time.time() if wall is None else wall)
        if kind == "ask" or kind == "answer":
            return self._checkin(kind, msg)
        return self._command(msg)

    def _hello(self, msg: dict[str, Any]) -> Hello:
        if self.claims is not None:
            raise Refusal(CloseCode.PROTOCOL, "hello sent twice")
        if not is_version(msg.get("v")):
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
        self.token = msg["token"]
        # From now on the buckets of who this is: a new connection of the same student starts where the old left.
        if self.role == "student":
            self._own_key = ("student", self.class_id, self.student_id)
            self._class_key = ("class", self.class_id)
        else:
            self._own_key = ("teachers", self.class_id)
        return Hello(claims)

    def _states(self, msg: dict[str, Any], now: float, wall: float) -> list[StateMessage | Stale]:
        if self.role != "student":
            raise Refusal(CloseCode.FORBIDDEN, "teachers cannot publish states")
        try:
            batch = StateBatch.from_dict(msg)
        except SchemaError as exc:
            raise Refusal(CloseCode.BAD_MESSAGE, str(exc)) from None
        # The batch was one message of the student's and the class's message budgets; its states count against the
        # student's state budget, which bounds what one identity stores whatever it packs into a message.
        limits = self.limits
        if not self.buckets.take(("states", self.class_id, self.student_id), limits.state_rate, limits.state_burst,
                                 now, len(batch.states)):
            raise Refusal(CloseCode.RATE_LIMITED,
                          f"more than {limits.state_rate:g} states/s from this student: publish less often")
        return [self._check_state(state, wall) for state in batch.states]

    def _state(self, msg: dict[str, Any], wall: float) -> StateMessage | Stale:
        if self.role != "student":
            raise Refusal(CloseCode.FORBIDDEN, "teachers cannot publish states")
        try:
            state = StateMessage.from_dict(msg)
        except SchemaError as exc:
            raise Refusal(CloseCode.BAD_MESSAGE, str(exc)) from None
        return self._check_state(state, wall)

    def _check_state(self, state: StateMessage, wall: float) -> StateMessage | Stale:
        if state.class_id != self.class_id:
            raise Refusal(CloseCode.FORBIDDEN, "state is for another class")
        if state.student_id != self.student_id:
            raise Refusal(CloseCode.FORBIDDEN, "state is for another student")
        skew = state.t - wall
        if not -self.limits.max_clock_skew <= skew <= self.limits.max_clock_skew:
            raise Refusal(
                CloseCode.BAD_MESSAGE,
                f"t is {_skew(skew)} {'ahead of' if skew > 0 else 'behind'} the hub's clock: set this computer's clock",
            )
        if state.seq <= self.last_seq:
            return Stale(state.seq, self.last_seq)
        self.last_seq = state.seq
        return state

    def _command(self, msg: dict[str, Any]) -> TeacherCommand:
        if self.role != "teacher":
            raise Refusal(CloseCode.FORBIDDEN, "students cannot send teacher commands")
        try:
            return TeacherCommand.from_dict(msg)
        except SchemaError as exc:
            raise Refusal(CloseCode.BAD_MESSAGE, str(exc)) from None


    def _checkin(self, kind: str, msg: dict[str, Any]) -> CheckinAsk | CheckinAnswer:
        # Teachers ask, students answer; the other way round is a forged role.
        if kind == "ask" and self.role != "teacher":
            raise Refusal(CloseCode.FORBIDDEN, "students cannot send check-in questions")
        if kind == "answer" and self.role != "student":
            raise Refusal(CloseCode.FORBIDDEN, "teachers cannot answer check-ins")
        try:
            return CheckinAsk.from_dict(msg) if kind == "ask" else CheckinAnswer.from_dict(msg)
        except SchemaError as exc:
            raise Refusal(CloseCode.BAD_MESSAGE, str(exc)) from None


def dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def nack(seq: int, last_seq: int, reason: str) -> str:
    """The hub's refusal of one state (the connection stays): the student forgets it, never resends it."""
    return dumps({"type": "nack", "seq": seq, "last_seq": last_seq, "reason": reason})


# --- limits across connections: joins, teacher pages, open connections, log lines ---


@dataclass(frozen=True)
class JoinLimits:
    """Joins allowed; each field is the ``HubConfig`` setting of that name."""

    join_rate_per_address: float  # joins per second from one address, sustained (a classroom behind one NAT:
    join_burst_per_address: float  # the whole class at once)
    join_rate_per_class: float
    join_burst_per_class: float
    max_students_per_class: int  # students a class may have (everyone who ever joined it)

    @classmethod
    def of(cls, config: Any) -> "JoinLimits":
        """The join limits a ``HubConfig`` sets, read by name."""
        return _of(cls, config)


class JoinGate:
    """Whether a join may go ahead: raises :class:`HttpRefusal` (429 with ``retry_after``, or 503 for a full class).

    ``attempt(address)`` comes before the join code is checked, so guessing costs the guesser's address;
    ``admit(class_id, size)`` after it, so nobody without the code can spend a class's budget.
    """

    def __init__(self, limits: JoinLimits, buckets: RateBuckets | None = None):
        self.limits = limits
        self.buckets = buckets if buckets is not None else RateBuckets()

    def attempt(self, address: str, now: float, trusted: bool = False) -> None:
        if trusted:
            return
        key = ("join-address", address)
        if not self.buckets.take(key, self.limits.join_rate_per_address, self.limits.join_burst_per_address, now):
            raise HttpRefusal(429, "too many joins from your address: try again in a minute",
                              self.buckets.retry_after(key))

    def admit(self, class_id: str, size: int, now: float) -> None:
        if size >= self.limits.max_students_per_class:
            raise HttpRefusal(503, f"this class is full ({self.limits.max_students_per_class} students): ask the teacher")
        key = ("join-class", class_id)
        if not self.buckets.take(key, self.limits.join_rate_per_class, self.limits.join_burst_per_class, now):
            raise HttpRefusal(429, "too many students joining this class right now: try again in a minute",
                              self.buckets.retry_after(key))


class TeacherSeats:
    """Teacher sockets per class: at most ``per_token`` with one token (a new one replaces that token's oldest,
    as a reloaded page should) and ``per_class`` in all (newcomers refused with 4014)."""

    def __init__(self, per_token: int, per_class: int):
        self.per_token, self.per_class = per_token, per_class
        self.seats: dict[str, dict[Any, str]] = {}  # class_id -> {connection: token}, oldest first

    def admit(self, class_id: str, token: str, conn: Any) -> list[Any]:
        """Seat ``conn``; return the connections it replaces (to close with 4012) or raise :class:`Refusal`."""
        seats = self.seats.setdefault(class_id, {})
        same = [c for c, t in seats.items() if t == token]
        replaced = same[: max(0, len(same) - self.per_token + 1)]
        if len(seats) - len(replaced) >= self.per_class:
            raise Refusal(CloseCode.TOO_MANY,
                          f"{self.per_class} teacher pages are open for this class: close one and reload")
        for c in replaced:
            del seats[c]
        seats[conn] = token
        return replaced

    def leave(self, class_id: str, conn: Any) -> None:
        seats = self.seats.get(class_id)
        if seats is not None:
            seats.pop(conn, None)
            if not seats:
                del self.seats[class_id]

    def count(self, class_id: str) -> int:
        return len(self.seats.get(class_id, ()))


class ConnectionLimiter:
    """Open connections (HTTP and websocket) per address and in all, each held by an ``owner`` object.

    ``trusted`` addresses (by default loopback: in ``smartsession serve`` every student kernel reaches the hub
    from there, and so does a reverse proxy on the same machine) are exempt from the per-address cap, never
    from the total. A connection that turns into a websocket hands its slot over (``transfer``).
    """

    def __init__(self, max_total: int, per_address: int, trusted: frozenset[str] | set[str] = frozenset()):
        self.max_total, self.per_address, self.trusted = max_total, per_address, frozenset(trusted)
        self.owners: dict[Any, str] = {}
        self.by_address: dict[str, int] = {}

    @property
    def total(self) -> int:
        return len(self.owners)

    def full(self) -> bool:
        return len(self.owners) >= self.max_total

    def address_full(self, address: str) -> bool:
        return address not in self.trusted and self.by_address.get(address, 0) >= self.per_address

    def acquire(self, owner: Any, address: str) -> str | None:
        """Count ``owner``'s new connection from ``address``; return why it is refused instead, or None."""
        if self.address_full(address):
            return f"{self.per_address} connections are open from your address: close some and retry"
        if len(self.owners) >= self.max_total:
            return f"the server has {self.max_total} open connections: try again shortly"
        self.owners[owner] = address
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None

    def release(self, owner: Any) -> None:
        address = self.owners.pop(owner, None)
        if address is None:
            return
        n = self.by_address[address]
        if n == 1:
            del self.by_address[address]
        else:
            self.by_address[address] = n - 1

    def transfer(self, old: Any, new: Any) -> bool:
        """Give ``old``'s slot to ``new``; False when ``old`` holds none."""
        address = self.owners.pop(old, None)
        if address is None:
            return False
        self.owners[new] = address
        return True


class QuietLog:
    """Log lines about client mistakes, at most ``per_period`` every ``period`` seconds; the rest are counted
    and reported in one line when logging resumes, so no client can fill the disk with its errors."""

    def __init__(self, emit: Callable[..., None], per_period: int = 20, period: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.emit, self.per_period, self.period, self.clock = emit, per_period, period, clock
        self.window = -math.inf
        self.count = 0
        self.suppressed = 0

    def __call__(self, msg: str, *args: Any) -> bool:
        now = self.clock()
        if now - self.window >= self.period:
            if self.suppressed:
                self.emit("... %d more like these in the last %.0f s were not logged", self.suppressed, self.period)
            self.window, self.count, self.suppressed = now, 0, 0
        if self.count >= self.per_period:
            self.suppressed += 1
            return False
        self.count += 1
        self.emit(msg, *args)
        return True
