"""Synthetic students and the scripted lesson they follow, without any network.

Each student is a Markov chain over states with a personality; ``Classroom.messages`` says what every
present student publishes at a simulated second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from smartsession.schema import EMOTION_STATES, STATES

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
