"""The mock classroom: N synthetic students who join a class and publish states through the real hub protocol.

``smartsession simulate`` lets a teacher try the dashboard without cameras; tests and benchmarks load the hub with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from smartsession.schema import EMOTION_STATES, STATES, StateMessage

#: Engagement a student in each state shows on average (what the live pipeline's scores look like).
STATE_ENGAGEMENT = {
    "focused": 82.0,
    "happy": 78.0,
    "confused": 58.0,
    "uncertain": 50.0,
    "distracted": 32.0,
    "drowsy": 22.0,
    "away": 4.0,
}


@dataclass(frozen=True)
class Personality:
    """How a synthetic student tends to behave: where their states settle, how long they dwell there."""

    name: str
    mix: dict[str, float]  # weights of the states the Markov chain jumps to
    dwell_s: float  # mean time in a state before a jump
    offset: float  # engagement points above/below the state's usual level


PERSONALITIES = (
    Personality("attentive", {"focused": 75, "happy": 8, "confused": 7, "distracted": 6, "drowsy": 2, "away": 1, "uncertain": 1}, 20, 5),
    Personality("average", {"focused": 58, "happy": 8, "confused": 10, "distracted": 14, "drowsy": 5, "away": 2, "uncertain": 3}, 15, 0),
    Personality("restless", {"focused": 45, "happy": 8, "confused": 7, "distracted": 28, "drowsy": 4, "away": 5, "uncertain": 3}, 8, -3),
    Personality("sleepy", {"focused": 50, "happy": 5, "confused": 6, "distracted": 10, "drowsy": 24, "away": 2, "uncertain": 3}, 25, -4),
)

#: Built-in scenarios. Times (``at``, ``until``, ``join``, ``leave``) are fractions of the duration.
SCENARIOS: dict[str, dict[str, Any]] = {
    "lecture": {
        "segments": [
            {"title": "Introduction", "at": 0.0},
            {"title": "Worked example", "at": 0.25},
            {"title": "New theory", "at": 0.5},
            {"title": "Exercises", "at": 0.75},
        ],
    },
    "drop": {
        "segments": [
            {"title": "Introduction", "at": 0.0},
            {"title": "Worked example", "at": 0.25},
            {"title": "Long derivation", "at": 0.5},
            {"title": "Exercises", "at": 0.75},
        ],
        "drops": [{"at": 0.55, "until": 0.75, "share": 0.8, "mix": {"distracted": 3, "drowsy": 2, "away": 1}}],
        "attendance": [],
    },
    "late-early": {
        "segments": [{"title": "First half", "at": 0.0}, {"title": "Second half", "at": 0.5}],
        "attendance": [{"share": 0.3, "join": 0.3}, {"share": 0.2, "leave": 0.6}],
    },
    "break": {
        "segments": [
            {"title": "Lecture", "at": 0.0},
            {"title": "Break", "at": 0.4},
            {"title": "Discussion", "at": 0.6},
        ],
        "silent": [{"at": 0.4, "until": 0.6}],
        "attendance": [],
    },
}


class ScenarioError(ValueError):
    """A scenario that does not follow the format; the message names the field and what to write."""


def load_scenario(spec: str | dict | None) -> dict[str, Any]:
    """A scenario from a built-in name, a JSON file path or a dict; checked and with defaults filled in."""
    if spec is None:
        spec = "lecture"
    if isinstance(spec, str):
        if spec in SCENARIOS:
            raw = dict(SCENARIOS[spec], name=spec)
        elif Path(spec).is_file():
            try:
                raw = json.loads(Path(spec).read_text())
            except json.JSONDecodeError as exc:
                raise ScenarioError(f"{spec}: not valid JSON ({exc})") from None
            raw.setdefault("name", Path(spec).stem)
        else:
            raise ScenarioError(
                f"unknown scenario {spec!r}: use one of {', '.join(SCENARIOS)} or the path of a JSON file"
            )
    else:
        raw = dict(spec)
    return _check(raw)


def _frac(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ScenarioError(f"{where} must be a fraction of the duration between 0 and 1, got {value!r}")
    return float(value)


def _mix(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise ScenarioError(f"{where} must be an object of state weights, e.g. {{\"distracted\": 2, \"drowsy\": 1}}")
    for k, v in value.items():
        if k not in STATES:
            raise ScenarioError(f"{where}: unknown state {k!r}; states are {', '.join(STATES)}")
        if not isinstance(v, (int, float)) or v < 0:
            raise ScenarioError(f"{where}.{k} must be a weight >= 0")
    if sum(value.values()) <= 0:
        raise ScenarioError(f"{where}: at least one weight must be > 0")
    return {k: float(v) for k, v in value.items()}


def _check(raw: dict[str, Any]) -> dict[str, Any]:
    known = {"name", "duration_s", "segments", "drops", "attendance", "silent", "pauses"}
    extra = set(raw) - known
    if extra:
        raise ScenarioError(f"unknown scenario field(s) {', '.join(sorted(extra))}; known: {', '.join(sorted(known))}")
    out: dict[str, Any] = {"name": str(raw.get("name", "scenario"))}
    if raw.get("duration_s") is not None:
        d = raw["duration_s"]
        if not isinstance(d, (int, float)) or d <= 0:
            raise ScenarioError("duration_s must be a number of seconds > 0")
        out["duration_s"] = float(d)
    segments = []
    for i, seg in enumerate(raw.get("segments", [])):
        where = f"segments[{i}]"
        if not isinstance(seg, dict) or not isinstance(seg.get("title"), str) or not seg["title"].strip():
            raise ScenarioError(f"{where} needs a title, e.g. {{\"title\": \"Introduction\", \"at\": 0}}")
        item = {"title": seg["title"].strip(), "at": _frac(seg.get("at", 0.0), f"{where}.at")}
        if "mix" in seg:
            item["mix"] = _mix(seg["mix"], f"{where}.mix")
        segments.append(item)
    out["segments"] = sorted(segments, key=lambda s: s["at"])
    out["drops"] = []
    for i, drop in enumerate(raw.get("drops", [])):
        where = f"drops[{i}]"
        at, until = _frac(drop.get("at"), f"{where}.at"), _frac(drop.get("until", 1.0), f"{where}.until")
        if until <= at:
            raise ScenarioError(f"{where}: until must come after at")
        out["drops"].append(
            {
                "at": at,
                "until": until,
                "share": _frac(drop.get("share", 1.0), f"{where}.share"),
                "mix": _mix(drop.get("mix", {"distracted": 2, "drowsy": 1}), f"{where}.mix"),
            }
        )
    out["attendance"] = None if "attendance" not in raw else []
    for i, rule in enumerate(raw.get("attendance") or []):
        where = f"attendance[{i}]"
        if not isinstance(rule, dict) or not ({"join", "leave"} & set(rule)):
            raise ScenarioError(f"{where} needs join and/or leave, e.g. {{\"share\": 0.2, \"join\": 0.3}}")
        item = {"share": _frac(rule.get("share", 1.0), f"{where}.share")}
        for key in ("join", "leave"):
            if key in rule:
                item[key] = _frac(rule[key], f"{where}.{key}")
        out["attendance"].append(item)
    out["silent"] = []
    for i, gap in enumerate(raw.get("silent", [])):
        at, until = _frac(gap.get("at"), f"silent[{i}].at"), _frac(gap.get("until"), f"silent[{i}].until")
        if until <= at:
            raise ScenarioError(f"silent[{i}]: until must come after at")
        out["silent"].append({"at": at, "until": until})
    out["pauses"] = []
    for i, pause in enumerate(raw.get("pauses", [])):
        where = f"pauses[{i}]"
        at, until = _frac(pause.get("at"), f"{where}.at"), _frac(pause.get("until"), f"{where}.until")
        if until <= at:
            raise ScenarioError(f"{where}: until must come after at")
        out["pauses"].append({"at": at, "until": until, "share": _frac(pause.get("share", 1.0), f"{where}.share")})
    return out


@dataclass
class SyntheticStudent:
    """One simulated student: a Markov chain over states and a smoothed engagement consistent with it."""

    index: int
    name: str
    personality: Personality
    join_s: float
    leave_s: float
    rng: Any
    state: str = "focused"
    engagement: float = 75.0
    left_state_s: float = 0.0
    in_drop: list[bool] = field(default_factory=list)  # per scenario drop: does this student take part
    in_pause: list[bool] = field(default_factory=list)  # per scenario pause: does this student pause
    paused: bool = False

    def present(self, s: float) -> bool:
        return self.join_s <= s < self.leave_s

    def step(self, s: float, dt: float, mix: dict[str, float], emotions: bool) -> tuple[str, float, dict[str, float]]:
        """Advance ``dt`` seconds towards the target ``mix``; return (state, engagement, features)."""
        rng = self.rng
        if rng.random() < 1 - math.exp(-dt / self.personality.dwell_s) or self.state not in mix:
            choices = [k for k in mix if k != self.state and mix[k] > 0] or list(mix)
            w = [mix[k] for k in choices]
            total = sum(w)
            self.state = str(rng.choice(choices, p=[x / total for x in w]))
        state = self.state
        if not emotions and state in EMOTION_STATES:
            state = "focused"  # what the live pipeline reports with emotions off
        target = STATE_ENGAGEMENT[state] + self.personality.offset
        self.engagement += (target - self.engagement) * (1 - math.exp(-dt / 3.0))
        value = min(100.0, max(0.0, self.engagement + rng.normal(0, 4)))
        return state, round(value, 2), self._features(state)

    def _features(self, state: str) -> dict[str, float]:
        if state == "away":
            return {}
        rng = self.rng
        yaw = rng.normal(0, 6) + (rng.choice([-1, 1]) * 32 if state == "distracted" else 0)
        pitch = rng.normal(-18 if state == "drowsy" else -3, 5)
        ear = rng.normal(0.14 if state == "drowsy" else 0.29, 0.02)
        return {"yaw": round(float(yaw), 2), "pitch": round(float(pitch), 2), "ear": round(float(ear), 4)}


@dataclass
class Classroom:
    """The scripted lesson, independent of any network: who is present, which mix applies, what each says.

    ``messages(s, dt)`` returns ``(student, state, engagement, features)`` for every student who
    publishes at simulated second ``s``; the async driver turns them into ``StateMessage``s.
    """

    students: list[SyntheticStudent]
    scenario: dict[str, Any]
    duration_s: float

    @classmethod
    def create(cls, n: int, duration_s: float, scenario: dict[str, Any], seed: int = 0) -> "Classroom":
        import numpy as np

        if n < 1:
            raise ValueError("students must be at least 1")
        rng = np.random.default_rng(seed)
        students = []
        for i in range(n):
            srng = np.random.default_rng([seed, i])
            personality = PERSONALITIES[int(rng.integers(len(PERSONALITIES)))]
            join, leave = 0.0, duration_s
            if scenario["attendance"] is None:  # no script: a few arrive late or leave early
                if rng.random() < 0.15:
                    join = float(rng.uniform(0, 0.15)) * duration_s
                if rng.random() < 0.1:
                    leave = float(rng.uniform(0.85, 1.0)) * duration_s
            s = SyntheticStudent(i, f"Sim student {i + 1}", personality, join, leave, srng)
            s.state = str(srng.choice(list(personality.mix), p=_norm(list(personality.mix.values()))))
            s.engagement = STATE_ENGAGEMENT[s.state] + personality.offset
            students.append(s)
        # Scripted attendance: each rule takes the next ``share`` of students, in order.
        cursor = 0
        for rule in scenario["attendance"] or []:
            k = max(1, round(rule["share"] * n))
            for s in students[cursor : cursor + k]:
                s.join_s = rule.get("join", 0.0) * duration_s
                s.leave_s = rule.get("leave", 1.0) * duration_s
            cursor += k
        # Drops hit the first ``share`` of students in a seeded shuffle, so who falls is reproducible.
        for drop in scenario["drops"]:
            hit = set(rng.permutation(n)[: max(1, round(drop["share"] * n))].tolist())
            for s in students:
                s.in_drop.append(s.index in hit)
        for pause in scenario["pauses"]:
            hit = set(rng.permutation(n)[: max(1, round(pause["share"] * n))].tolist())
            for s in students:
                s.in_pause.append(s.index in hit)
        return cls(students, scenario, duration_s)

    def segment_index(self, s: float) -> int | None:
        """Index of the scripted segment running at ``s`` (None before the first one)."""
        idx = None
        for i, seg in enumerate(self.scenario["segments"]):
            if seg["at"] * self.duration_s <= s:
                idx = i
        return idx

    def silent(self, s: float) -> bool:
        return any(g["at"] * self.duration_s <= s < g["until"] * self.duration_s for g in self.scenario["silent"])

    def mix_for(self, student: SyntheticStudent, s: float) -> dict[str, float]:
        for k, drop in enumerate(self.scenario["drops"]):
            if student.in_drop[k] and drop["at"] * self.duration_s <= s < drop["until"] * self.duration_s:
                return drop["mix"]
        mix = dict(student.personality.mix)
        i = self.segment_index(s)
        if i is not None and "mix" in self.scenario["segments"][i]:
            # A segment's mix pulls everyone towards it; personalities still shade it half-and-half.
            seg_mix = self.scenario["segments"][i]["mix"]
            a, b = sum(seg_mix.values()), sum(mix.values())
            mix = {k: 0.5 * seg_mix.get(k, 0) / a + 0.5 * mix.get(k, 0) / b for k in STATES}
        return mix

    def pausing(self, student: SyntheticStudent, s: float) -> bool:
        return any(
            student.in_pause[k] and p["at"] * self.duration_s <= s < p["until"] * self.duration_s
            for k, p in enumerate(self.scenario["pauses"])
        )

    def messages(self, s: float, dt: float, emotions: bool = True) -> list[SimulatedState]:
        """What each present student publishes at ``s``. A student who pauses publishes one paused state
        and then nothing until they resume, as the student page does (its camera stops)."""
        if self.silent(s):
            return []
        out = []
        for st in self.students:
            if not st.present(s):
                continue
            if self.pausing(st, s):
                if not st.paused:
                    st.paused = True
                    out.append(SimulatedState(st, "uncertain", 0.0, {}, True))
                continue
            st.paused = False
            state, engagement, feats = st.step(s, dt, self.mix_for(st, s), emotions)
            out.append(SimulatedState(st, state, engagement, feats, False))
        return out


class SimulatedState(NamedTuple):
    student: SyntheticStudent
    state: str
    engagement: float
    features: dict[str, float]
    paused: bool


def _norm(w: list[float]) -> list[float]:
    total = sum(w)
    return [x / total for x in w]


@dataclass
class SimulationResult:
    """What a simulation did, in hub terms: for tests and the benchmark to compare a report against."""

    class_id: str
    session_id: str | None
    students: dict[str, str]  # student_id -> name
    sent: int
    t_start: float  # capture time of the lesson's first second
    duration_s: float
    speed: float
    segments: list[dict[str, Any]]  # segment_id, title, t (capture-time position)
    drops: list[dict[str, Any]]  # at, until (capture times), students (ids)
    presence: dict[str, tuple[float, float]]  # student_id -> (first, last) capture time

    def summary(self) -> dict[str, Any]:
        return {
            "class_id": self.class_id,
            "session_id": self.session_id,
            "students": len(self.students),
            "messages": self.sent,
            "duration_s": self.duration_s,
            "speed": self.speed,
            "segments": [s["title"] for s in self.segments],
        }


#: The hub accepts this many messages per second per student (``HubConfig.rate``); stay safely under it.
MAX_RATE = 18.0


async def run_simulation(
    url: str | None,
    class_id: str,
    join_code: str,
    students: int,
    rate_hz: float = 5.0,
    duration_s: float | None = None,
    scenario: str | dict | None = None,
    teacher_token: str | None = None,
    seed: int = 0,
    speed: float = 1.0,
    progress=None,
) -> SimulationResult:
    """Play a scripted lesson through the hub: students join (HTTP), publish with ``StudentPublisher``, leave.

    With ``teacher_token`` a ``TeacherSubscriber`` opens a new session, starts each scripted segment
    on time and ends the session. ``speed`` > 1 compresses time: capture times ``t`` follow the
    simulated timeline (ending about now) while messages go out ``speed`` times faster.
    """
    from smartsession.hub.client import StudentPublisher, TeacherSubscriber

    sc = load_scenario(scenario)
    duration = float(duration_s or sc.get("duration_s") or 300.0)
    if rate_hz <= 0 or speed <= 0:
        raise ValueError("rate and speed must be > 0")
    if rate_hz * speed > MAX_RATE:
        raise ValueError(
            f"rate x speed = {rate_hz * speed:g} messages/s per student; the hub accepts about 20: "
            f"lower --rate or --speed so that their product stays under {MAX_RATE:g}"
        )
    classroom = Classroom.create(students, duration, sc, seed=seed)
    loop = asyncio.get_running_loop()
    say = progress or (lambda line: None)

    teacher = None
    session_id = None
    if teacher_token:
        teacher = TeacherSubscriber(class_id, teacher_token, url=url)
        await teacher.start()
        await teacher.wait_snapshot(30)
        session_id = (await teacher.send_command("start_session"))["session_id"]
        say(f"session {session_id} started")

    compressed = speed != 1.0
    wall0 = loop.time()
    t_origin = time.time() - (duration if compressed else 0.0)

    def capture_time(s: float) -> float:
        return t_origin + s if compressed else time.time()

    pubs: dict[int, StudentPublisher] = {}
    ids: dict[int, str] = {}
    presence: dict[str, list[float]] = {}
    segments: list[dict[str, Any]] = []
    current_segment: str | None = None
    sent = 0
    dt = 1.0 / rate_hz
    seg_starts = [seg["at"] * duration for seg in sc["segments"]]
    next_seg = 0
    try:
        for k in range(int(round(duration * rate_hz))):
            s = k * dt
            delay = wall0 + s / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -dt / speed:
                # Behind schedule (a busy machine): slow the lesson down rather than burst past the hub's rate limit.
                wall0 -= delay
            while next_seg < len(seg_starts) and seg_starts[next_seg] <= s:
                title = sc["segments"][next_seg]["title"]
                if teacher is not None:
                    await teacher.send_command("start_segment", title=title)
                    current_segment = teacher.room.segment.segment_id if teacher.room.segment else None
                segments.append({"segment_id": current_segment, "title": title, "t": capture_time(s)})
                say(f"{s:7.1f} s  segment: {title}")
                next_seg += 1
            for st in classroom.students:
                if st.present(s) and st.index not in pubs:
                    pub = await StudentPublisher.join(url, class_id, join_code, st.name)
                    await pub.start()
                    pubs[st.index], ids[st.index] = pub, pub.student_id
                elif not st.present(s) and st.index in pubs and s >= st.leave_s:
                    pub = pubs.pop(st.index)
                    session_id = session_id or pub.status.get("session_id")
                    await _leave(pub)
            emotions = all(p.emotions for p in pubs.values()) if pubs else True
            t = capture_time(s)
            for st, state, engagement, feats, paused in classroom.messages(s, dt, emotions):
                pub = pubs.get(st.index)
                if pub is None:
                    continue
                pub.publish(
                    StateMessage(
                        class_id=class_id, student_id=pub.student_id, seq=0, t=t, state=state,
                        engagement=engagement, confidence=0.0 if paused else round(0.6 + 0.35 * st.rng.random(), 3),
                        features=feats, segment=current_segment, paused=paused,
                    )
                )
                span = presence.setdefault(pub.student_id, [t, t])
                span[1] = t
                sent += 1
            if k % max(1, int(rate_hz * 30)) == 0:
                say(f"{s:7.1f} s  {len(pubs)} students connected, {sent} states sent")
        await asyncio.gather(*(_leave(p) for p in pubs.values()))
        if session_id is None:
            session_id = next((p.status.get("session_id") for p in pubs.values() if p.status), None)
        if teacher is not None:
            await teacher.send_command("end_session")
    finally:
        for pub in pubs.values():
            await pub.stop()
        if teacher is not None:
            await teacher.stop()

    drops = [
        {
            "at": t_origin + d["at"] * duration,
            "until": t_origin + d["until"] * duration,
            "students": [ids[st.index] for st in classroom.students if st.in_drop[i] and st.index in ids],
        }
        for i, d in enumerate(sc["drops"])
    ]
    return SimulationResult(
        class_id=class_id,
        session_id=session_id,
        students={ids[st.index]: st.name for st in classroom.students if st.index in ids},
        sent=sent,
        t_start=t_origin,
        duration_s=duration,
        speed=speed,
        segments=segments,
        drops=drops,
        presence={sid: (a, b) for sid, (a, b) in presence.items()},
    )


async def _leave(pub) -> None:
    """Let the hub acknowledge what this student sent, then disconnect."""
    if pub.seq >= 0:
        try:
            await pub.wait_acked(pub.seq, timeout=10)
        except asyncio.TimeoutError:
            pass  # the hub is slow or gone: what it has, it has
    await pub.stop()


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="a mock classroom: N synthetic students publishing through the real hub protocol",
        description=(
            "Join N synthetic students to a class and publish plausible states (a Markov chain per student "
            "with personalities; scripted segments, engagement drops, late arrivals). With --teacher-token "
            "the simulator also starts the scenario's lecture segments. Built-in scenarios: "
            + ", ".join(SCENARIOS)
            + "; or a JSON file (docs/REPORT.md describes the format)."
        ),
    )
    p.add_argument("--url", default=None, help="hub URL, e.g. http://127.0.0.1:8866 (default: $SMARTSESSION_HUB_URL)")
    p.add_argument("--class", dest="class_id", required=True, help="class id")
    p.add_argument("--join", dest="join_code", required=True, help="the class's join code")
    p.add_argument("--students", type=int, default=10, help="number of students (default 10)")
    p.add_argument("--rate", type=float, default=5.0, help="states per student per second (default 5)")
    p.add_argument("--duration", type=float, default=None, help="seconds of lesson (default: scenario's, else 300)")
    p.add_argument("--scenario", default=None, help=f"{' | '.join(SCENARIOS)} | FILE.json (default lecture)")
    p.add_argument("--teacher-token", default=None, help="teacher token: also drive the scenario's segments")
    p.add_argument(
        "--speed", type=float, default=1.0,
        help="time compression: 10 plays a 10-minute lesson in one minute, with capture times on the "
             "simulated timeline (ending now); rate x speed must stay under the hub's 20 messages/s",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same lesson)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    url = args.url or os.environ.get("SMARTSESSION_HUB_URL")
    if not url:
        print("smartsession simulate: give --url (e.g. http://127.0.0.1:8866) or set SMARTSESSION_HUB_URL", file=sys.stderr)
        return 2
    from smartsession.hub.client import HubError

    try:
        result = asyncio.run(
            run_simulation(
                url, args.class_id, args.join_code, args.students, args.rate, args.duration,
                scenario=args.scenario, teacher_token=args.teacher_token, seed=args.seed, speed=args.speed,
                progress=lambda line: print(line, flush=True),
            )
        )
    except (ScenarioError, ValueError, HubError, OSError) as exc:
        print(f"smartsession simulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result.summary()))
    return 0
