"""Plays a scripted lesson through a real hub: students join over HTTP and publish with the hub client.

``run_simulation`` is what ``smartsession simulate``, the tests and the benchmarks call.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from smartsession.schema import StateMessage
from smartsession.simulate.classroom import Classroom
from smartsession.simulate.scenario import load_scenario

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
    answers: int = 0  # check-in answers the simulated students sent

    def summary(self) -> dict[str, Any]:
        return {
            "class_id": self.class_id,
            "session_id": self.session_id,
            "students": len(self.students),
            "messages": self.sent,
            "duration_s": self.duration_s,
            "speed": self.speed,
            "segments": [s["title"] for s in self.segments],
            "answers": self.answers,
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
    ck_starts = [ck["at"] * duration for ck in sc["checkins"]]
    next_ck = 0
    latest: dict[int, tuple[str, bool]] = {}  # student index -> (state, paused) just published
    due: list[tuple[float, Any, str, str, int]] = []  # (s, publisher, checkin_id, kind, student index)
    answered = 0
    answer_rng = random.Random(seed)  # its own stream: adding check-ins leaves the states of a seed as they were
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
            while next_ck < len(ck_starts) and ck_starts[next_ck] <= s:
                kind = sc["checkins"][next_ck]["kind"]
                next_ck += 1
                if teacher is None:
                    continue
                try:
                    ck = (await teacher.ask(kind, seconds=60, research=sc["answers"]["research"]))["checkin_id"]
                except Exception as exc:  # e.g. too soon after the last at this speed: the lesson goes on
                    say(f"{s:7.1f} s  check-in not sent: {exc}")
                    continue
                say(f"{s:7.1f} s  check-in {ck}: {kind}")
                for st in classroom.students:
                    if st.index in pubs and answer_rng.random() < sc["answers"]["share"]:
                        # Students answer a few (simulated) seconds later, each at their own pace.
                        due.append((s + answer_rng.uniform(2.0, 8.0), pubs[st.index], ck, kind, st.index))
            for item in [d for d in due if d[0] <= s]:
                due.remove(item)
                _, pub, ck, kind, index = item
                state, paused = latest.get(index, ("uncertain", True))
                if paused or state == "uncertain":
                    continue  # nobody at the screen answers nothing
                option = simulated_answer(kind, state, sc["answers"]["agree"], answer_rng)
                if pub.answer(ck, option, research=sc["answers"]["research"]):
                    answered += 1
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
                latest[st.index] = (state, paused)
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
        answers=answered,
    )


def simulated_answer(kind: str, state: str, agree: float, rng) -> int:
    """What a simulated student answers: true to its simulated attention with probability ``agree``.

    "mind": on the lesson (0) when attending, somewhere else (1) when not; "sense": yes (0) or partly (1) when
    attending, no (2) when not. A student who does not agree with the truth picks the other side."""
    from smartsession.report.checkins import ATTENDING

    attending = state in ATTENDING
    if rng.random() >= agree:
        attending = not attending
    if kind == "mind":
        return 0 if attending else 1
    return rng.choice((0, 1)) if attending else 2


async def _leave(pub) -> None:
    """Let the hub acknowledge what this student sent, then disconnect."""
    if pub.seq >= 0:
        try:
            await pub.wait_acked(pub.seq, timeout=10)
        except asyncio.TimeoutError:
            pass  # the hub is slow or gone: what it has, it has
    await pub.stop()
