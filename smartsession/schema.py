"""The one schema for everything that crosses the hub: student states, teacher commands, snapshots.

Imported by the student side, the hub and the teacher side; docs/PROTOCOL.md describes the same messages.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

PROTOCOL_VERSION = 1

#: Every state a student can be in. Attention is decided first: the first three mean attending (with the expression
#: read on the face; ``focused`` also when it is unclear), then not attending, and ``uncertain`` only when the face
#: itself cannot be read (too small, too faint, half out of the frame).
STATES = ("focused", "happy", "confused", "distracted", "drowsy", "away", "uncertain")
#: States that infer emotion; switched off with ``emotions=False`` (EU AI Act art. 5(1)(f)).
EMOTION_STATES = ("happy", "confused")
#: States left when emotions are off: attention signals only.
ATTENTION_STATES = tuple(s for s in STATES if s not in EMOTION_STATES)

#: Features a student may share with the hub (a few named scalars, never landmarks or images).
SHARED_FEATURES = ("yaw", "pitch", "roll", "gaze_x", "gaze_y", "ear", "mar")
MAX_FEATURES = len(SHARED_FEATURES)

#: Presence of a student as the teacher sees it.
PRESENCE = ("connected", "paused", "disconnected")

#: Commands a teacher may send.
TEACHER_COMMANDS = (
    "start_session",
    "end_session",
    "start_segment",
    "rename_student",
    "hide_student",
    "set_emotions",
)


class SchemaError(ValueError):
    """A message that does not follow the schema. ``str(err)`` says what is wrong, for the client."""


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise SchemaError(what)


#: The one pattern for ids (class, student, session, segment) and join codes, in messages and in URL routes.
IDENT_PATTERN = r"[A-Za-z0-9._-]{1,64}"
_IDENT = re.compile(IDENT_PATTERN)


def is_ident(value: Any) -> bool:
    """Whether ``value`` is a well-formed id or join code (``IDENT_PATTERN``)."""
    return isinstance(value, str) and _IDENT.fullmatch(value) is not None


def _ident(value: Any, name: str) -> str:
    if is_ident(value):
        return value
    _require(isinstance(value, str), f"{name} must be a string")
    _require(1 <= len(value) <= 64, f"{name} must be 1-64 characters")
    raise SchemaError(f"{name} may only contain ASCII letters, digits, '-', '_' and '.'")


def _version(value: Any) -> None:
    # A JSON integer: ``true`` and ``1.0`` compare equal to 1 in Python, and are refused.
    _require(value.__class__ is int and value == PROTOCOL_VERSION, f"v must be {PROTOCOL_VERSION}")


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    # The happy path first: this runs for every field of every state message the hub receives.
    if value.__class__ is float or value.__class__ is int:
        if lo <= value <= hi:
            return float(value)
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a number"
    )
    _require(math.isfinite(value), f"{name} must be finite")
    raise SchemaError(f"{name} must be between {lo} and {hi}")


STATE_FIELDS = frozenset({
    "type", "v", "class_id", "student_id", "seq", "t", "state", "engagement",
    "confidence", "features", "segment", "paused", "consent",
})
_STATE_SET = frozenset(STATES)
_SHARED_SET = frozenset(SHARED_FEATURES)


@dataclass(frozen=True)
class StateMessage:
    """What a student's kernel publishes a few times a second."""

    class_id: str
    student_id: str
    seq: int
    t: float  # capture time, unix seconds (the wire keeps the short name; an Observation's is media_time)
    state: str
    engagement: float  # 0-100
    confidence: float  # 0-1
    features: Mapping[str, float] = field(default_factory=dict)
    segment: str | None = None
    paused: bool = False
    consent: bool = True
    type: str = "state"
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_id": self.class_id, "student_id": self.student_id, "seq": self.seq, "t": self.t,
            "state": self.state, "engagement": self.engagement, "confidence": self.confidence,
            "features": dict(self.features), "segment": self.segment, "paused": self.paused,
            "consent": self.consent, "type": self.type, "v": self.v,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StateMessage":
        """Validate a decoded JSON object; raise :class:`SchemaError` naming the first problem."""
        _require(d.__class__ is dict or isinstance(d, Mapping), "message must be a JSON object")
        _require(d.get("type") == "state", "type must be 'state'")
        _version(d.get("v"))
        if not STATE_FIELDS.issuperset(d):
            extra = set(d) - STATE_FIELDS
            raise SchemaError(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
        seq = d.get("seq")
        _require(
            seq.__class__ is int or (isinstance(seq, int) and not isinstance(seq, bool)), "seq must be an integer"
        )
        _require(0 <= seq < 2**53, "seq must be between 0 and 2**53")
        state = d.get("state")
        if state not in _STATE_SET:
            raise SchemaError(f"state must be one of {', '.join(STATES)}")
        feats = d.get("features", {})
        _require(feats.__class__ is dict or isinstance(feats, Mapping), "features must be an object")
        _require(len(feats) <= MAX_FEATURES, f"at most {MAX_FEATURES} features")
        features = {}
        for k, val in feats.items():
            if k not in _SHARED_SET:
                raise SchemaError(f"feature {k!r} is not shared; allowed: {', '.join(SHARED_FEATURES)}")
            features[k] = _number(val, "features." + k, -1e6, 1e6)
        segment = d.get("segment")
        if segment is not None:
            _ident(segment, "segment")
        paused, consent = d.get("paused", False), d.get("consent", True)
        _require(paused is True or paused is False, "paused must be true or false")
        _require(consent is True or consent is False, "consent must be true or false")
        return cls(
            class_id=_ident(d.get("class_id"), "class_id"),
            student_id=_ident(d.get("student_id"), "student_id"),
            seq=seq,
            t=_number(d.get("t"), "t", 0, 1e11),
            state=state,
            engagement=_number(d.get("engagement"), "engagement", 0, 100),
            confidence=_number(d.get("confidence"), "confidence", 0, 1),
            features=features,
            segment=segment,
            paused=paused,
            consent=consent,
        )

    @classmethod
    def from_observation(
        cls,
        obs: Any,
        *,
        class_id: str,
        student_id: str,
        seq: int,
        segment: str | None = None,
        paused: bool = False,
        consent: bool = True,
    ) -> "StateMessage":
        """Build the hub message from an analysis ``Observation``: state and scores only, never pixels."""
        feats = {k: round(float(obs.features[k]), 4) for k in SHARED_FEATURES if k in (obs.features or {})}
        feats = {k: v for k, v in feats.items() if math.isfinite(v)}
        return cls(
            class_id=class_id,
            student_id=student_id,
            seq=seq,
            t=float(obs.wall_time),
            state=obs.state,
            engagement=round(float(obs.engagement), 2),
            confidence=round(float(obs.confidence), 4),
            features=feats,
            segment=segment,
            paused=paused,
            consent=consent,
        )


#: States one ``states`` message may carry: a second of a student's frames at the camera's highest rate, plus room
#: for a reconnect's resend of the unacknowledged ones.
MAX_BATCH_STATES = 32
#: What each state of a batch carries; ``type``, ``v`` and the ids are the batch's, once.
BATCH_STATE_FIELDS = STATE_FIELDS - {"type", "v", "class_id", "student_id"}
BATCH_FIELDS = frozenset({"type", "v", "class_id", "student_id", "states"})


@dataclass(frozen=True)
class StateBatch:
    """One message with a student's states of the last second or so, one per analysed frame in capture order:
    what a kernel publishes instead of a ``state`` message a frame (a message costs the same whatever it
    carries). Each state is validated as a ``state`` message is; seqs strictly increase."""

    class_id: str
    student_id: str
    states: tuple[StateMessage, ...]
    type: str = "states"
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type, "v": self.v, "class_id": self.class_id, "student_id": self.student_id,
            "states": [{k: v for k, v in m.to_dict().items() if k in BATCH_STATE_FIELDS} for m in self.states],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StateBatch":
        """Validate a decoded JSON object; raise :class:`SchemaError` naming the first problem."""
        _require(d.__class__ is dict or isinstance(d, Mapping), "message must be a JSON object")
        _require(d.get("type") == "states", "type must be 'states'")
        _version(d.get("v"))
        if not BATCH_FIELDS.issuperset(d):
            extra = set(d) - BATCH_FIELDS
            raise SchemaError(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
        entries = d.get("states")
        _require(isinstance(entries, list), "states must be a list")
        _require(1 <= len(entries) <= MAX_BATCH_STATES, f"states must hold 1-{MAX_BATCH_STATES} states")
        class_id, student_id = _ident(d.get("class_id"), "class_id"), _ident(d.get("student_id"), "student_id")
        states = []
        for i, entry in enumerate(entries):
            _require(entry.__class__ is dict or isinstance(entry, Mapping), f"states[{i}] must be an object")
            if not BATCH_STATE_FIELDS.issuperset(entry):
                extra = set(entry) - BATCH_STATE_FIELDS
                raise SchemaError(f"states[{i}]: unknown field(s): {', '.join(sorted(map(str, extra)))}")
            try:
                state = StateMessage.from_dict(
                    {**entry, "type": "state", "v": PROTOCOL_VERSION, "class_id": class_id, "student_id": student_id})
            except SchemaError as err:
                raise SchemaError(f"states[{i}]: {err}") from None
            _require(not states or state.seq > states[-1].seq, f"states[{i}]: seq must be above the one before it")
            states.append(state)
        return cls(class_id=class_id, student_id=student_id, states=tuple(states))


#: Longest title (class, session, segment) and display name the hub accepts.
MAX_TITLE = 120


#: Shown where characters were taken out of a name or title, so an edited name never looks like another's.
REMOVED_MARK = "\ufffd"
#: Characters nobody sees that change how text reads: controls (ANSI escapes start with one), format characters
#: (bidi overrides and isolates, zero-width spaces and joiners, the BOM), surrogates, private use, unassigned.
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn"))
_JOINED = frozenset(("So", "Sk"))  # a zero-width joiner between two symbols is an emoji sequence, kept


def visible_text(value: str) -> str:
    """``value`` with each run of invisible characters replaced by one :data:`REMOVED_MARK`."""
    if value.isprintable():  # the common case, and isprintable() is False for every character removed below
        return value
    out: list[str] = []
    for i, ch in enumerate(value):
        category = unicodedata.category(ch)
        if category not in _INVISIBLE or ch.isspace():
            out.append(ch)
        elif ch == "\u200d" and 0 < i < len(value) - 1 and unicodedata.category(value[i - 1]) in _JOINED | {"Mn"} \
                and unicodedata.category(value[i + 1]) in _JOINED:
            out.append(ch)
        elif not out or out[-1] != REMOVED_MARK:
            out.append(REMOVED_MARK)
    return "".join(out)


def clean_title(value: Any, name: str) -> str:
    """A title or display name as everyone will see it: whitespace collapsed, invisible characters marked."""
    _require(isinstance(value, str), f"{name} must be a string")
    _require(len(value) <= 4 * MAX_TITLE, f"{name} must be 1-{MAX_TITLE} characters")
    value = " ".join(visible_text(value).split())
    _require(1 <= len(value) <= MAX_TITLE, f"{name} must be 1-{MAX_TITLE} characters")
    return value


@dataclass(frozen=True)
class TeacherCommand:
    """What a teacher's dashboard sends to steer the class; ``id`` comes back in the ``result`` reply."""

    command: str
    id: int | None = None
    title: str | None = None  # start_session, start_segment
    student_id: str | None = None  # rename_student, hide_student
    name: str | None = None  # rename_student
    hidden: bool | None = None  # hide_student
    emotions: bool | None = None  # set_emotions
    type: str = "command"
    v: int = PROTOCOL_VERSION

    #: Which fields each command needs (besides ``command``/``id``).
    NEEDS = {
        "start_session": (),
        "end_session": (),
        "start_segment": ("title",),
        "rename_student": ("student_id", "name"),
        "hide_student": ("student_id", "hidden"),
        "set_emotions": ("emotions",),
    }

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def args(self) -> dict[str, Any]:
        """The command's arguments, as stored in the command log."""
        return {k: v for k, v in asdict(self).items() if v is not None and k not in ("type", "v", "id", "command")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TeacherCommand":
        _require(isinstance(d, Mapping), "message must be a JSON object")
        _require(d.get("type") == "command", "type must be 'command'")
        _version(d.get("v"))
        command = d.get("command")
        _require(command in TEACHER_COMMANDS, f"command must be one of {', '.join(TEACHER_COMMANDS)}")
        needs = cls.NEEDS[command]
        allowed = {"type", "v", "command", "id", *needs}
        if command == "start_session":
            allowed.add("title")
        extra = set(d) - allowed
        _require(not extra, f"unknown field(s) for {command}: {', '.join(sorted(map(str, extra)))}")
        for name in needs:
            _require(d.get(name) is not None, f"{command} needs {name}")
        cid = d.get("id")
        _require(
            cid is None or (isinstance(cid, int) and not isinstance(cid, bool) and 0 <= cid < 2**53),
            "id must be a non-negative integer",
        )
        out: dict[str, Any] = {"command": command, "id": cid}
        if d.get("title") is not None:
            out["title"] = clean_title(d["title"], "title")
        if "student_id" in needs:
            out["student_id"] = _ident(d["student_id"], "student_id")
        if "name" in needs:
            out["name"] = clean_title(d["name"], "name")
        for flag in ("hidden", "emotions"):
            if flag in needs:
                _require(isinstance(d[flag], bool), f"{flag} must be true or false")
                out[flag] = d[flag]
        return cls(**out)


@dataclass
class StudentStatus:
    """One student as the teacher sees them: name, presence, last-seen time and latest state."""

    student_id: str
    name: str = ""
    hidden: bool = False
    presence: str = "disconnected"
    last_seen: float | None = None  # server time of the last message or connect, unix s
    state: dict[str, Any] | None = None  # the latest StateMessage dict with ``received``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Segment:
    """A stretch of a lecture the teacher named, within a session (``start``, ``end``: the hub's unix time)."""

    segment_id: str
    title: str
    start: float
    end: float | None = None  # None while it runs; the history and the export carry the end of earlier ones

    def to_dict(self) -> dict[str, Any]:
        # A running segment is sent as version 1 always sent it, without an end.
        d = asdict(self)
        if self.end is None:
            del d["end"]
        return d


@dataclass
class Snapshot:
    """What a teacher receives on connect: the class as it is now; updates follow."""

    class_id: str
    title: str
    session_id: str | None
    segment: Segment | None
    emotions: bool
    students: list[StudentStatus]
    ended: bool = False  # the teacher ended the last session and none has opened since
    type: str = "snapshot"
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["segment"] = self.segment.to_dict() if self.segment else None
        d["students"] = [s.to_dict() for s in self.students]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Snapshot":
        _require(isinstance(d, Mapping) and d.get("type") == "snapshot", "type must be 'snapshot'")
        seg = d.get("segment")
        return cls(
            class_id=d["class_id"],
            title=d.get("title", ""),
            session_id=d.get("session_id"),
            segment=Segment(**seg) if seg else None,
            emotions=bool(d.get("emotions", True)),
            students=[StudentStatus(**s) for s in d.get("students", [])],
            ended=bool(d.get("ended", False)),
        )


# --- check-ins: a one-tap question to every student, and their answers ---

#: The preset questions a teacher sends with one tap: kind -> (question, options).
CHECKIN_PRESETS = {
    "sense": ("Did that make sense?", ("yes", "partly", "no")),
    "mind": ("Where was your mind just now?", ("on the lesson", "somewhere else")),
}
CHECKIN_KINDS = (*CHECKIN_PRESETS, "custom")
MIN_OPTIONS, MAX_OPTIONS = 2, 5
#: Longest custom question and option the hub accepts.
MAX_QUESTION, MAX_OPTION = 200, 40
#: Seconds a check-in stays open, bounds of what a teacher may ask for.
CHECKIN_SECONDS = (10.0, 600.0)


@dataclass(frozen=True)
class CheckinAsk:
    """A teacher's check-in: a preset ``kind`` (its question and options) or ``custom`` with its own."""

    kind: str
    question: str
    options: tuple[str, ...]
    seconds: float = 60.0  # how long it stays open
    research: bool = False  # the teacher's "use answers for research"
    id: int | None = None  # comes back in the ``result`` reply
    type: str = "ask"
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CheckinAsk":
        _require(isinstance(d, Mapping), "message must be a JSON object")
        _require(d.get("type") == "ask", "type must be 'ask'")
        _version(d.get("v"))
        extra = set(d) - {"type", "v", "id", "kind", "question", "options", "seconds", "research"}
        _require(not extra, f"unknown field(s) for ask: {', '.join(sorted(map(str, extra)))}")
        cid = d.get("id")
        _require(
            cid is None or (isinstance(cid, int) and not isinstance(cid, bool) and 0 <= cid < 2**53),
            "id must be a non-negative integer",
        )
        kind = d.get("kind")
        _require(kind in CHECKIN_KINDS, f"kind must be one of {', '.join(CHECKIN_KINDS)}")
        if kind == "custom":
            question = _text(d.get("question"), "question", MAX_QUESTION)
            options = d.get("options")
            _require(isinstance(options, list), "options must be a list of strings")
            _require(MIN_OPTIONS <= len(options) <= MAX_OPTIONS, f"give {MIN_OPTIONS}-{MAX_OPTIONS} options")
            options = tuple(_text(o, "each option", MAX_OPTION) for o in options)
            _require(len(set(options)) == len(options), "options must differ from each other")
        else:
            _require("question" not in d and "options" not in d, f"the {kind} preset takes no question or options")
            question, options = CHECKIN_PRESETS[kind]
        seconds = _number(d.get("seconds", 60.0), "seconds", *CHECKIN_SECONDS)
        research = d.get("research", False)
        _require(research is True or research is False, "research must be true or false")
        return cls(kind, question, options, seconds, research, cid)


def _text(value: Any, name: str, longest: int) -> str:
    """Free text a person typed: whitespace collapsed, 1-``longest`` characters, no control characters.
    Markup is kept as text: every page renders it escaped."""
    _require(isinstance(value, str), f"{name} must be a string")
    _require(len(value) <= 4 * longest, f"{name} must be at most {longest} characters")
    value = " ".join(value.split())
    _require(1 <= len(value) <= longest, f"{name} must be 1-{longest} characters")
    _require(value.isprintable(), f"{name} may not contain control characters")
    return value


@dataclass(frozen=True)
class CheckinAnswer:
    """A student's answer: the index of the option picked in check-in ``checkin_id``; ``research``: the
    student agreed on the consent screen that their answers may be used for research."""

    checkin_id: str
    option: int
    research: bool = False
    type: str = "answer"
    v: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CheckinAnswer":
        _require(isinstance(d, Mapping), "message must be a JSON object")
        _require(d.get("type") == "answer", "type must be 'answer'")
        _version(d.get("v"))
        extra = set(d) - {"type", "v", "checkin_id", "option", "research"}
        _require(not extra, f"unknown field(s) for answer: {', '.join(sorted(map(str, extra)))}")
        option = d.get("option")
        _require(option.__class__ is int and 0 <= option < MAX_OPTIONS,
                 f"option must be an integer 0-{MAX_OPTIONS - 1}")
        research = d.get("research", False)
        _require(research is True or research is False, "research must be true or false")
        return cls(_ident(d.get("checkin_id"), "checkin_id"), option, research)
