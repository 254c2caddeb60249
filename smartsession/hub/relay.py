"""What crosses the backplane between hubs, without sockets: events sealed with the deployment's secret, opened and
checked exactly like a client's message before any hub relays, stores or acts on them.

Anyone who can write to Redis (another tenant, a compromised machine on the backplane's network) can publish on a
class channel or write into a room's hash. Without the secret every hub shares, nothing they write is accepted:
each published batch carries an HMAC over its class, its sender, its time and its events; each room entry an HMAC
over its class, its field and its event. A sealed batch older than ``max_age`` is refused (no replay of a
``class`` event from last week). Whatever opens is then checked field by field, as ``protocol.Connection`` checks
a student's state or a teacher's command, so even a hub with a bug cannot put what a client may not into a room.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from typing import Any

from smartsession.schema import (
    PRESENCE,
    PROTOCOL_VERSION,
    STATE_FIELDS,
    SchemaError,
    StateMessage,
    clean_title,
    is_ident,
)

#: Largest batch a hub opens (a class of 500 students sends ~80 KB in one 20 ms flush) and largest event.
MAX_BATCH_BYTES = 4 << 20
MAX_EVENT_BYTES = 8192
#: Seconds a published batch stays valid (Redis relays within milliseconds; clocks of nodes are NTP-synced).
MAX_AGE = 60.0
#: How far a state's ``t`` may be from the receiving hub's clock, as for a client (protocol.Limits).
MAX_CLOCK_SKEW = 3600.0

_LABEL = b"smartsession backplane v1"
_MAC = re.compile(r"[0-9a-f]{64}")
_SEGMENT_ID = re.compile(r"seg[1-9][0-9]{0,8}")


class BadRelay(ValueError):
    """A backplane message or room entry that is not accepted; ``str(err)`` is one line for the log."""


def backplane_key(secret: str) -> bytes:
    """The key for sealing, derived from the deployment's secret (tokens are signed with another derivation)."""
    if not secret:
        raise ValueError("the backplane needs the deployment's secret (every hub shares it)")
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def seal(key: bytes, class_id: str, origin: str, texts: list[str], now: float) -> str:
    """One published batch: ``mac``, ``origin``, ``time`` and the events' JSON texts, one per line."""
    body = "\n".join([origin, f"{now:.3f}", *texts])
    return f"{_mac(key, 'batch', class_id, body)}\n{body}"


def unseal(key: bytes, class_id: str, data: bytes, now: float, max_age: float = MAX_AGE) -> tuple[str, list[str]]:
    """The sender and event texts of a batch published on ``class_id``'s channel; raises :class:`BadRelay`."""
    if len(data) > MAX_BATCH_BYTES:
        raise BadRelay(f"a batch of {len(data)} bytes (at most {MAX_BATCH_BYTES})")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BadRelay("a batch that is not UTF-8") from None
    mac, _, body = text.partition("\n")
    if not _MAC.fullmatch(mac) or not hmac.compare_digest(mac, _mac(key, "batch", class_id, body)):
        raise BadRelay("a batch not sealed with this deployment's secret (or for another class)")
    origin, sent, *texts = body.split("\n") + [""]
    texts.pop()
    try:
        age = now - float(sent)
    except ValueError:
        raise BadRelay("a sealed batch without a time") from None
    if not -max_age <= age <= max_age:
        raise BadRelay(f"a sealed batch {age:.0f} s old (replayed, or this node's clock is off)")
    if any(len(t) > MAX_EVENT_BYTES for t in texts):
        raise BadRelay(f"a sealed event longer than {MAX_EVENT_BYTES} characters")
    return origin, texts


def seal_entry(key: bytes, class_id: str, field: str, text: str) -> str:
    """A room entry for Redis's hash: ``mac`` and the event's JSON text."""
    return f"{_mac(key, 'room', class_id, field, text)} {text}"


def unseal_entry(key: bytes, class_id: str, field: str, value: bytes) -> str:
    """The event text of a room entry read from Redis; raises :class:`BadRelay`."""
    if len(value) > MAX_EVENT_BYTES + 65:
        raise BadRelay(f"a room entry of {len(value)} bytes")
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise BadRelay("a room entry that is not UTF-8") from None
    mac, _, event = text.partition(" ")
    if not _MAC.fullmatch(mac) or not hmac.compare_digest(mac, _mac(key, "room", class_id, field, event)):
        raise BadRelay(f"room entry {field[:80]!r} not sealed with this deployment's secret")
    return event


# --- events: checked like a client's message ---


def _fields(event: dict[str, Any], allowed: frozenset[str], kind: str) -> None:
    extra = set(event) - allowed
    if extra:
        raise SchemaError(f"{kind} event with unknown field(s): {', '.join(sorted(map(str, extra)))[:80]}")


def _time(value: Any, name: str) -> float:
    if value.__class__ not in (int, float) or not math.isfinite(value) or not 0 <= value <= 1e11:
        raise SchemaError(f"{name} must be a unix time")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if value is not True and value is not False:
        raise SchemaError(f"{name} must be true or false")
    return value


def _student_id(value: Any) -> str:
    if not is_ident(value):
        raise SchemaError("student_id must be an id")
    return value


def _name(value: Any, name: str, optional: bool = False) -> str:
    if optional and value == "":
        return value
    if clean_title(value, name) != value:
        raise SchemaError(f"{name} is not a clean title (spaces, control characters or length)")
    return value


_STATE = STATE_FIELDS | {"received"}
_PRESENCE = frozenset({"type", "student_id", "presence", "last_seen", "name"})
_STUDENT = frozenset({"type", "student_id", "name", "hidden"})
_CLASS = frozenset({"type", "v", "class_id", "title", "session_id", "segment", "emotions", "ended"})
_SEGMENT = frozenset({"segment_id", "title", "start", "end"})
_REVOKED = frozenset({"type", "class_id"})


def check_event(class_id: str, event: Any, now: float, max_clock_skew: float = MAX_CLOCK_SKEW) -> dict[str, Any]:
    """The event, if it is one a hub could have made for ``class_id``; raises ``SchemaError`` naming the problem."""
    if event.__class__ is not dict:
        raise SchemaError("an event must be a JSON object")
    kind = event.get("type")
    if kind == "state":
        _fields(event, _STATE, kind)
        received = _time(event.get("received"), "received")
        msg = StateMessage.from_dict({k: v for k, v in event.items() if k != "received"})
        if msg.class_id != class_id:
            raise SchemaError("a state for another class")
        if abs(msg.t - now) > max_clock_skew or abs(received - now) > max_clock_skew:
            raise SchemaError("a state whose time is far from this hub's clock")
        return {**msg.to_dict(), "received": received}
    if kind == "presence":
        _fields(event, _PRESENCE, kind)
        if event.get("presence") not in PRESENCE:
            raise SchemaError(f"presence must be one of {', '.join(PRESENCE)}")
        return {"type": kind, "student_id": _student_id(event.get("student_id")), "presence": event["presence"],
                "last_seen": _time(event.get("last_seen"), "last_seen"),
                "name": _name(event.get("name", ""), "name", optional=True)}
    if kind == "student":
        _fields(event, _STUDENT, kind)
        return {"type": kind, "student_id": _student_id(event.get("student_id")),
                "name": _name(event.get("name"), "name", optional=True), "hidden": _flag(event.get("hidden"), "hidden")}
    if kind == "class":
        _fields(event, _CLASS, kind)
        if event.get("v").__class__ is not int or event.get("v") != PROTOCOL_VERSION:
            raise SchemaError(f"v must be {PROTOCOL_VERSION}")
        if event.get("class_id") != class_id:
            raise SchemaError("a class event for another class")
        session_id = event.get("session_id")
        if session_id is not None and not is_ident(session_id):
            raise SchemaError("session_id must be an id or null")
        segment = event.get("segment")
        if segment is not None:
            if segment.__class__ is not dict:
                raise SchemaError("segment must be an object or null")
            _fields(segment, _SEGMENT, "segment")
            if session_id is None or not isinstance(segment.get("segment_id"), str) \
                    or not _SEGMENT_ID.fullmatch(segment["segment_id"]):
                raise SchemaError("segment_id must be seg1, seg2, ... within a session")
            segment = {"segment_id": segment["segment_id"], "title": _name(segment.get("title"), "segment title"),
                       "start": _time(segment.get("start"), "segment start"),
                       **({"end": _time(segment["end"], "segment end")} if "end" in segment else {})}
        return {"type": kind, "v": PROTOCOL_VERSION, "class_id": class_id,
                "title": _name(event.get("title"), "title", optional=True), "session_id": session_id,
                "segment": segment, "emotions": _flag(event.get("emotions"), "emotions"),
                "ended": _flag(event.get("ended", False), "ended")}
    if kind == "revoked":
        # Tells a hub to check its teachers' tokens in the store; the store, not this event, says who is revoked.
        _fields(event, _REVOKED, kind)
        if event.get("class_id") != class_id:
            raise SchemaError("a revoked event for another class")
        return {"type": kind, "class_id": class_id}
    raise SchemaError(f"unknown event type {str(kind)[:40]!r}")
