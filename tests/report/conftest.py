"""Real sessions for the report tests: the mock classroom plays scripted lessons through a real hub.

One in-process hub on 127.0.0.1 (``running_hub``) hosts a class per scenario; the simulations run at
once, time-compressed, and leave their states in the hub's SQLite store, which the tests then read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from smartsession.hub.client import TeacherSubscriber
from smartsession.hub.standalone import running_hub
from smartsession.simulate import SimulationResult, run_simulation


@dataclass
class Lesson:
    """A simulated lesson stored by the hub: where its store is and what the simulator did."""

    data_dir: Path
    session_id: str
    result: SimulationResult | None


#: name -> (students, rate Hz, duration s, scenario (a name or a dict), with a teacher driving segments, speed)
LESSONS = {
    # Engagement drops for 80% of the class at 55% of a 10-minute lesson, in "Long derivation".
    "drop": (15, 1.0, 600, "drop", True, 16.0),
    "single": (1, 1.0, 240, "lecture", True, 16.0),
    "late_early": (6, 1.0, 300, "late-early", True, 16.0),
    "break": (5, 1.0, 300, "break", True, 16.0),
    # Two of five students press Pause from 30% to 60% of the lesson.
    "pauses": (5, 1.0, 300, {"segments": [{"title": "Lecture", "at": 0}], "attendance": [],
                             "pauses": [{"share": 0.4, "at": 0.3, "until": 0.6}]}, True, 16.0),
    # No teacher: the hub opens the session itself and nobody starts segments.
    "no_segments": (4, 1.0, 630, "lecture", False, 16.0),
}


async def _empty_session(url: str, info: dict) -> str:
    async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=url) as teacher:
        await teacher.wait_snapshot(30)
        session_id = (await teacher.send_command("start_session", title="Nobody came"))["session_id"]
        await teacher.send_command("end_session")
    return session_id


async def _play_all(data_dir: Path) -> dict[str, Lesson]:
    async with running_hub(data_dir=str(data_dir)) as (hub, url):
        runs = {}
        for name, (n, rate, duration, scenario, teacher, speed) in LESSONS.items():
            info = hub.create_class(f"Class {name}")
            runs[name] = run_simulation(
                url, info["class_id"], info["join_code"], n, rate, duration, scenario=scenario,
                teacher_token=info["teacher_token"] if teacher else None, seed=1, speed=speed,
            )
        empty = _empty_session(url, hub.create_class("Empty class"))
        results = await asyncio.gather(*runs.values(), empty)
        hub.store.flush()
    lessons = {name: Lesson(data_dir, r.session_id, r) for name, r in zip(runs, results)}
    lessons["empty"] = Lesson(data_dir, results[-1], None)
    return lessons


@pytest.fixture(scope="session")
def lessons(tmp_path_factory) -> dict[str, Lesson]:
    """Every scripted lesson, played once per test run through one real hub (about 40 s of wall time)."""
    return asyncio.run(_play_all(tmp_path_factory.mktemp("hub")))


@pytest.fixture(scope="session")
def store(lessons):
    from smartsession.hub.store import Store

    with Store(next(iter(lessons.values())).data_dir) as s:
        yield s
