"""Check-ins without sockets: a class's open question, who answered it, the tally, when it closes.

``CheckinBook`` is fed with the time like the other limits in ``hub.protocol``; every change is an event (a dict
ready to send) that ``apply`` folds in again, so hubs sharing a backplane converge as they do on class rooms.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

from smartsession.schema import PROTOCOL_VERSION, CheckinAnswer, CheckinAsk

#: Events about check-ins that students receive too (teachers receive every event).
STUDENT_EVENTS = frozenset({"checkin", "checkin_closed"})
CHECKIN_EVENTS = frozenset({"checkin", "checkin_closed", "answered"})


class CheckinRefused(Exception):
    """An ask or an answer the hub will not take; ``str(err)`` is the reason for the client (no close)."""


#: Closed check-ins a book still names as closed (older ones count as unknown).
REMEMBERED = 64


@dataclass(frozen=True)
class CheckinLimits:
    """Each field is the ``HubConfig`` setting of that name (its help says more)."""

    checkin_min_interval: float  # seconds between two check-ins of a class
    max_checkins_per_session: int  # check-ins a session may have

    @classmethod
    def of(cls, config: Any) -> "CheckinLimits":
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


class CheckinBook:
    """One class's check-ins for its current session: at most one open at a time (a new one closes the last)."""

    def __init__(self, limits: CheckinLimits):
        self.limits = limits
        self.session_id: str | None = None
        self.count = 0
        self.open: dict[str, Any] | None = None  # the open check-in's event
        self.answers: dict[str, int] = {}  # student_id -> option, for the open check-in
        self.counts: list[int] = []
        self.closed: OrderedDict[str, None] = OrderedDict()
        self.last_asked = float("-inf")  # monotonic time of the last ask, for min_interval

    def _new_session(self, session_id: str | None) -> None:
        if session_id != self.session_id:
            self.session_id, self.count, self.open, self.answers, self.counts = session_id, 0, None, {}, []
            self.closed.clear()

    def status(self, student_id: str | None = None) -> dict[str, Any] | None:
        """The open check-in for a snapshot (with its tally) or a student's welcome (whether they answered)."""
        if self.open is None:
            return None
        out = dict(self.open)
        if student_id is None:
            out.update(counts=list(self.counts), answered=len(self.answers))
        else:
            out["answered"] = student_id in self.answers
        return out

    def ask(self, ask: CheckinAsk, session_id: str | None, segment: str | None, wall: float,
            now: float) -> list[dict[str, Any]]:
        """Open a check-in (closing the open one first); returns the events. ``wall``: unix time, ``now``: monotonic."""
        if session_id is None:
            raise CheckinRefused("no session is open: start the lesson first")
        self._new_session(session_id)
        interval, most = self.limits.checkin_min_interval, self.limits.max_checkins_per_session
        wait = interval - (now - self.last_asked)
        if wait > 0:
            raise CheckinRefused(f"a check-in went out {interval - wait:.0f} s ago: wait {wait:.0f} s before the next")
        if self.count >= most:
            raise CheckinRefused(f"this lesson had {most} check-ins already")
        events = []
        if self.open is not None:
            events.append(self.close(wall))
        self.last_asked = now
        event = {
            "type": "checkin", "v": PROTOCOL_VERSION, "session_id": session_id,
            "checkin_id": f"ck{self.count + 1}", "kind": ask.kind, "question": ask.question,
            "options": list(ask.options), "asked": wall, "closes": wall + ask.seconds, "segment": segment,
            "research": ask.research,
        }
        self.apply(event)
        events.append(event)
        return events

    def answer(self, student_id: str, answer: CheckinAnswer, wall: float) -> dict[str, Any]:
        """Take a student's answer; returns the ``answered`` event or raises :class:`CheckinRefused`."""
        open_ = self.open
        if open_ is None or open_["checkin_id"] != answer.checkin_id:
            if answer.checkin_id in self.closed or (open_ is not None and _older(answer.checkin_id, open_)):
                raise CheckinRefused(f"check-in {answer.checkin_id} is closed")
            raise CheckinRefused(f"no check-in {answer.checkin_id} in this lesson")
        if wall >= open_["closes"]:
            raise CheckinRefused(f"check-in {answer.checkin_id} is closed")
        if student_id in self.answers:
            raise CheckinRefused(f"you already answered check-in {answer.checkin_id}")
        if answer.option >= len(open_["options"]):
            raise CheckinRefused(f"option must be 0-{len(open_['options']) - 1}")
        event = {
            "type": "answered", "session_id": self.session_id, "checkin_id": answer.checkin_id,
            "student_id": student_id, "option": answer.option, "received": wall, "research": answer.research,
        }
        self.apply(event)
        event.update(counts=list(self.counts), answered=len(self.answers))
        return event

    def close(self, wall: float) -> dict[str, Any]:
        event = {"type": "checkin_closed", "v": PROTOCOL_VERSION, "session_id": self.session_id,
                 "checkin_id": self.open["checkin_id"], "closed": wall, "counts": list(self.counts),
                 "answered": len(self.answers)}
        self.apply(event)
        return event

    def due(self, wall: float) -> dict[str, Any] | None:
        """The ``checkin_closed`` event when the open check-in's time is up (or its session ended)."""
        if self.open is not None and wall >= self.open["closes"]:
            return self.close(wall)
        return None

    def end_session(self, wall: float) -> dict[str, Any] | None:
        return self.close(wall) if self.open is not None else None

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "checkin":
            self._new_session(event["session_id"])
            self.open, self.answers, self.counts = event, {}, [0] * len(event["options"])
            self.count = max(self.count, int(event["checkin_id"][2:]))
        elif event.get("session_id") != self.session_id or self.open is None:
            return  # about a session or check-in this book no longer holds
        elif kind == "answered" and event["checkin_id"] == self.open["checkin_id"]:
            if event["student_id"] not in self.answers and 0 <= event["option"] < len(self.counts):
                self.answers[event["student_id"]] = event["option"]
                self.counts[event["option"]] += 1
        elif kind == "checkin_closed" and event["checkin_id"] == self.open["checkin_id"]:
            self.closed[event["checkin_id"]] = None
            while len(self.closed) > REMEMBERED:
                self.closed.popitem(last=False)
            self.open, self.answers = None, {}


def _older(checkin_id: str, open_: dict[str, Any]) -> bool:
    number = checkin_id[2:]
    return checkin_id.startswith("ck") and number.isdecimal() and int(number) < int(open_["checkin_id"][2:])
