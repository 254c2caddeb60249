"""A class's live state on the hub: its students and their presence, latest states, the open session and segment.

Sans-I/O like ``protocol``: every change is an event (a dict for teachers) that ``ClassRoom.apply`` folds, from
this hub and from others on the backplane alike, so the hubs of a deployment converge on the same room.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smartsession.schema import PROTOCOL_VERSION, Segment, Snapshot, StateMessage, StudentStatus, TeacherCommand


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
    # The teacher ended the last session: none opens by itself (a state, a reconnect, a teacher page) until the
    # teacher starts one or a student joins anew, so the students still on the page are not recorded after it.
    ended: bool = False

    def snapshot(self) -> Snapshot:
        return Snapshot(
            class_id=self.class_id,
            title=self.title,
            session_id=self.session_id,
            segment=self.segment,
            emotions=self.emotions,
            students=list(self.students.values()),
            ended=self.ended,
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
            "ended": self.ended,
        }

    def known_segment(self, segment_id: str | None) -> bool:
        """A state may name no segment, or one this session has had (``seg1`` .. ``seg{segment_count}``)."""
        if segment_id is None:
            return True
        if not segment_id.startswith("seg") or not segment_id[3:].isdecimal():
            return False
        return 1 <= int(segment_id[3:]) <= self.segment_count

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
            self.ended = bool(event.get("ended", False))

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
            self.session_id, self.segment, self.segment_count, self.ended = new_session_id(), None, 0, False
        elif cmd.command == "end_session":
            self.session_id, self.segment, self.ended = None, None, True
        elif cmd.command == "start_segment":
            if self.session_id is None:
                self.session_id, self.segment_count, self.ended = new_session_id(), 0, False
            self._start_segment(cmd.title, now)
        elif cmd.command == "set_emotions":
            self.emotions = cmd.emotions
        return [self.status_event()]

    def _start_segment(self, title: str, now: float) -> None:
        self.segment_count += 1
        self.segment = Segment(f"seg{self.segment_count}", title, now)

    def ensure_session(self, new_session_id) -> dict[str, Any] | None:
        """Open a session implicitly when a student arrives and none is open, unless the teacher ended it."""
        if self.session_id is not None or self.ended:
            return None
        self.session_id, self.segment, self.segment_count = new_session_id(), None, 0
        return self.status_event()
