"""The teacher's live picture of a class: who is there, their latest state, class engagement over time.

Pure and synchronous: ``ClassView.apply(event, now)`` takes the hub's snapshot and events (``state``,
``presence``, ``student``, ``class``) and returns the students that changed; the page draws what it holds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# STATE_COLOURS and PRESENCE_COLOURS are re-exported: pages import them from here.
from smartsession.palette import PRESENCE_COLOURS, STATE_COLOURS, symbol_of  # noqa: F401
from smartsession.schema import STATES, Segment

#: States that mean the student's attention is elsewhere; the card and the alerts treat them alike.
LOW_ATTENTION = ("distracted", "drowsy", "away")

#: One point per second is enough for a sparkline, a timeline and the class chart.
HISTORY_SECONDS = 2 * 3600


@dataclass
class StudentState:
    """What the teacher knows about one student; ``history`` holds one (t, engagement, state) per second."""

    student_id: str
    name: str = ""
    hidden: bool = False
    presence: str = "connected"
    state: str | None = None
    engagement: float | None = None
    confidence: float | None = None
    segment: str | None = None
    t: float | None = None  # capture time of the latest state (student's clock)
    # When the hub last heard from them (hub clock: the hub and the teacher kernel share a machine).
    received: float | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))

    @property
    def label(self) -> str:
        return self.name or self.student_id

    def record(self, t: float, engagement: float, state: str) -> None:
        # Several messages a second would flood the sparkline; the latest of each second wins.
        if self.history and int(self.history[-1][0]) == int(t):
            self.history[-1] = (t, engagement, state)
        else:
            self.history.append((t, engagement, state))


def sparkline_points(values: Iterable[float], width: int = 96, height: int = 24, lo: float = 0.0, hi: float = 100.0) -> str:
    """SVG ``<polyline points=...>`` for ``values`` on a fixed 0-100 scale, so cards compare at a glance."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    if len(vals) == 1:
        vals = vals * 2
    step = width / (len(vals) - 1)
    span = hi - lo
    pts = []
    for i, v in enumerate(vals):
        y = height - (min(max(v, lo), hi) - lo) / span * height
        pts.append(f"{i * step:.1f},{y:.1f}")
    return " ".join(pts)


class ClassView:
    """The live class model behind the teacher page.

    ``stale_after``: a student still marked connected who sent nothing for this many seconds is shown
    as disconnected (a frozen tab or a dead kernel may keep its socket open for a while).
    """

    def __init__(self, class_id: str, *, stale_after: float = 8.0, spark_seconds: int = 60):
        self.class_id = class_id
        self.stale_after = stale_after
        self.spark_seconds = spark_seconds
        self.students: dict[str, StudentState] = {}
        self.segments: list[Segment] = []  # this session's segments seen by this page, oldest first
        self.title = ""
        self.session_id: str | None = None
        self.last_session_id: str | None = None  # the open session, else the one that ended last (for its report)
        self.ended = False  # the teacher ended the session and none has opened since
        self.emotions = True
        self.series: list[tuple[float, float]] = []  # (page time, class engagement)
        self.ready = False  # a snapshot arrived: the hub accepted the teacher token
        self._stale: set[str] = set()

    # -- incoming messages ------------------------------------------------------------------

    def apply(self, message: Mapping[str, Any], now: float) -> set[str]:
        """Apply one hub message; return the ids of students whose card must be redrawn.

        Unknown message types are ignored so that a newer hub does not break an older page.
        """
        handler = {
            "snapshot": self._on_snapshot,
            "class": self._on_class,
            "state": self._on_state,
            "presence": self._on_presence,
            "student": self._on_student,
        }.get(message.get("type"))
        if handler is None:
            return set()
        return handler(message, now)

    def _on_snapshot(self, msg: Mapping[str, Any], now: float) -> set[str]:
        if msg.get("class_id") != self.class_id:
            raise ValueError(f"snapshot is for class {msg.get('class_id')!r}, this page shows {self.class_id!r}")
        self.ready = True
        self._stale.clear()
        self._on_class(msg, now)
        # A snapshot also comes after every reconnect: keep the histories of the students it lists.
        listed = {s["student_id"] for s in msg.get("students") or ()}
        for sid in set(self.students) - listed:
            del self.students[sid]
        for s in msg.get("students") or ():
            card = self._student(s["student_id"])
            card.name = s.get("name") or ""
            card.hidden = bool(s.get("hidden", False))
            if isinstance(s.get("state"), Mapping):
                self._take_state(card, s["state"], now)
            card.presence = s.get("presence", "disconnected")
            card.received = s.get("last_seen") or card.received
        if self.session_id is None:
            # No lesson running (the last one ended, maybe before a restart): students who left are not on the
            # grid; those still on their pages are. A running lesson's history sorts its own (load_history).
            for sid in [sid for sid, c in self.students.items() if c.presence == "disconnected"]:
                del self.students[sid]
        return set(self.students)

    def _on_class(self, msg: Mapping[str, Any], now: float) -> set[str]:
        self.title = msg.get("title") or ""
        new = msg.get("session_id")
        if new is not None and new != self.last_session_id:
            # A new lesson: the last one's segments and the cards of students who left it go. An ended lesson
            # keeps both on screen (its bands, its students) until then.
            self.segments.clear()
            if self.last_session_id is not None:
                for sid in [s for s, c in self.students.items() if c.presence == "disconnected"]:
                    del self.students[sid]
        self.session_id = msg.get("session_id")
        self.last_session_id = self.session_id or self.last_session_id
        self.ended = bool(msg.get("ended", False))
        self.emotions = bool(msg.get("emotions", True))
        current = self.current_segment()
        seg = msg.get("segment")
        if current is not None and (seg is None or seg["segment_id"] != current.segment_id):
            current.end = float(seg["start"]) if seg else now
        if seg and (current is None or seg["segment_id"] != current.segment_id):
            self.segments.append(Segment(seg["segment_id"], seg.get("title") or "", float(seg["start"])))
        return set()

    def _on_state(self, msg: Mapping[str, Any], now: float) -> set[str]:
        card = self._student(msg["student_id"])
        self._take_state(card, msg, now)
        if card.presence != "disconnected":
            card.presence = "paused" if msg.get("paused") else "connected"
        self._stale.discard(card.student_id)
        return {card.student_id}

    def _on_presence(self, msg: Mapping[str, Any], now: float) -> set[str]:
        card = self._student(msg["student_id"])
        card.presence = msg.get("presence", card.presence)
        card.received = msg.get("last_seen", now)
        if msg.get("name"):
            card.name = msg["name"]
        self._stale.discard(card.student_id)
        return {card.student_id}

    def _on_student(self, msg: Mapping[str, Any], now: float) -> set[str]:
        card = self._student(msg["student_id"])
        if msg.get("name") is not None:
            card.name = msg["name"]
        if "hidden" in msg:
            card.hidden = bool(msg["hidden"])
        return {card.student_id}

    def _student(self, student_id: str) -> StudentState:
        card = self.students.get(student_id)
        if card is None:
            card = self.students[student_id] = StudentState(student_id)
        return card

    @staticmethod
    def _take_state(card: StudentState, msg: Mapping[str, Any], now: float) -> None:
        card.state = msg.get("state", card.state)
        card.engagement = msg.get("engagement", card.engagement)
        card.confidence = msg.get("confidence", card.confidence)
        card.segment = msg.get("segment", card.segment)
        card.t = msg.get("t", card.t)
        card.received = msg.get("received", now)
        if card.engagement is not None and card.state is not None and not msg.get("paused"):
            card.record(card.received, float(card.engagement), card.state)

    def load_history(self, doc: Mapping[str, Any]) -> set[str]:
        """Fill in what happened before this page opened, from the hub's history of the session.

        Only points older than what the page already holds are added, so nothing seen live is overwritten;
        returns the students whose cards changed. A history of another session (the teacher started a new
        one meanwhile) is ignored.
        """
        if doc.get("session_id") != self.session_id:
            return set()
        # Students who left before this lesson (the class remembers everyone who ever joined) are not on its grid.
        published = set((doc.get("students") or {}).keys())
        for sid in [s for s, c in self.students.items() if c.presence == "disconnected" and s not in published]:
            del self.students[sid]
        first = self.series[0][0] if self.series else math.inf
        self.series[:0] = [(float(t), float(v)) for t, v in doc.get("class") or () if t < first]
        del self.series[: max(0, len(self.series) - HISTORY_SECONDS)]
        known = {s.segment_id for s in self.segments}
        earlier = [
            Segment(s["segment_id"], s.get("title") or "", float(s["start"]),
                    None if s.get("end") is None else float(s["end"]))
            for s in doc.get("segments") or () if s["segment_id"] not in known
        ]
        self.segments = sorted(earlier + self.segments, key=lambda s: s.start)
        changed = set()
        for student_id, points in (doc.get("students") or {}).items():
            card = self.students.get(student_id)
            if card is None:
                continue  # not in this class's snapshot: nothing to draw it on
            first = card.history[0][0] if card.history else math.inf
            older = [(float(t), float(e), str(state)) for t, e, state in points if t < first]
            if older:
                card.history = deque([*older, *card.history], maxlen=HISTORY_SECONDS)
                changed.add(student_id)
        return changed

    # -- what the page draws ------------------------------------------------------------------

    def presence(self, card: StudentState, now: float) -> str:
        """The presence shown on the card: the hub's, except silent "connected" students count as gone."""
        if card.presence == "connected" and (card.received is None or now - card.received > self.stale_after):
            return "disconnected"
        return card.presence

    def expire(self, now: float) -> set[str]:
        """Students who just went silent for ``stale_after`` seconds (their card must be redrawn)."""
        changed = set()
        for sid, card in self.students.items():
            stale = card.presence == "connected" and self.presence(card, now) == "disconnected"
            if stale and sid not in self._stale:
                self._stale.add(sid)
                changed.add(sid)
            elif not stale:
                self._stale.discard(sid)
        return changed

    def visible(self) -> list[StudentState]:
        return [c for c in self.students.values() if not c.hidden]

    def active(self, now: float) -> list[StudentState]:
        """Students who count for the class figures: visible, connected, not paused, with a state."""
        return [c for c in self.visible() if self.presence(c, now) == "connected" and c.state is not None]

    def counts(self, now: float) -> dict[str, int]:
        """Students per state, plus how many are paused or disconnected."""
        counts = {s: 0 for s in STATES}
        counts.update(paused=0, disconnected=0)
        for card in self.visible():
            p = self.presence(card, now)
            if p != "connected":
                counts[p] += 1
            elif card.state in counts:
                counts[card.state] += 1
        return counts

    def class_engagement(self, now: float) -> float | None:
        """Mean engagement of the active students, or None when nobody is active."""
        vals = [c.engagement for c in self.active(now) if c.engagement is not None]
        return sum(vals) / len(vals) if vals else None

    def sample(self, now: float, every: float = 1.0) -> bool:
        """Add a point to the class engagement series (at most one per ``every`` s); True if added."""
        if self.series and now - self.series[-1][0] < every:
            return False
        value = self.class_engagement(now)
        if value is None:
            return False
        self.series.append((now, value))
        if len(self.series) > HISTORY_SECONDS:
            del self.series[: len(self.series) - HISTORY_SECONDS]
        return True

    def segment_bands(self, now: float) -> list[tuple[float, float, str]]:
        """(start, end, title) of each lecture segment; the running one ends ``now``."""
        return [(s.start, s.end if s.end is not None else now, s.title) for s in self.segments]

    def current_segment(self) -> Segment | None:
        return next((s for s in reversed(self.segments) if s.end is None), None)

    def card(self, student_id: str, now: float) -> dict[str, Any]:
        """What the grid widget needs to draw one card (plain JSON)."""
        c = self.students[student_id]
        presence = self.presence(c, now)
        spark = [e for t, e, _ in c.history if now - t <= self.spark_seconds]
        return {
            "id": c.student_id,
            "label": c.label,
            "state": c.state or "uncertain",
            # The shape of the state (or of the presence), so the card never relies on its colour alone.
            "symbol": symbol_of(c.state or "uncertain" if presence == "connected" else presence),
            "colour": STATE_COLOURS.get(c.state or "uncertain") if presence == "connected" else PRESENCE_COLOURS[presence],
            "engagement": None if c.engagement is None else round(c.engagement),
            "presence": presence,
            "last_seen": None if c.received is None else round(c.received, 1),
            # Capture time of the state shown, so a benchmark can time capture -> teacher's screen.
            "t": c.t,
            "spark": sparkline_points(spark),
            "hidden": c.hidden,
        }

    def timeline(self, student_id: str) -> list[tuple[float, float, str]]:
        """One student's (t, engagement, state) per second, for the detail view."""
        return list(self.students[student_id].history)
