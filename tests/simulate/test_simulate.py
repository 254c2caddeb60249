"""The mock classroom: scripted scenarios, plausible students, and the real hub protocol end to end.

Pure parts (scenarios, the Markov chain) run without a network; the rest drives a real hub on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

from smartsession.hub.client import HubError
from smartsession.hub.standalone import running_hub
from smartsession.hub.store import Store
from testkit.processes import HubProcess
from smartsession.simulate import (
    SCENARIOS,
    STATE_ENGAGEMENT,
    Classroom,
    ScenarioError,
    load_scenario,
    run_simulation,
)


def _play(n, duration, scenario, seed=0, rate=1.0):
    """Every message of a simulated lesson, without a hub: (second, student, state, engagement)."""
    c = Classroom.create(n, duration, load_scenario(scenario), seed=seed)
    out = []
    for k in range(int(duration * rate)):
        s = k / rate
        out += [(s, m.student.index, m.state, m.engagement) for m in c.messages(s, 1 / rate) if not m.paused]
    return c, out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_builtin_scenarios_load(name):
    sc = load_scenario(name)
    assert sc["name"] == name and sc["segments"]
    assert [s["at"] for s in sc["segments"]] == sorted(s["at"] for s in sc["segments"])


def test_scenario_from_a_json_file(tmp_path):
    path = tmp_path / "quiz.json"
    path.write_text(json.dumps({
        "duration_s": 120,
        "segments": [{"title": "Quiz", "at": 0}, {"title": "Answers", "at": 0.5, "mix": {"confused": 2}}],
        "drops": [{"at": 0.6, "until": 0.9, "share": 0.5}],
        "attendance": [{"share": 0.5, "join": 0.25}],
    }))
    sc = load_scenario(str(path))
    assert sc["name"] == "quiz" and sc["duration_s"] == 120
    assert sc["segments"][1]["mix"] == {"confused": 2.0}
    assert sc["drops"][0]["mix"]  # a default "bored" mix


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no-such-scenario", "use one of lecture"),
        ({"segments": [{"title": "A", "at": 1.5}]}, r"segments\[0\].at must be a fraction"),
        ({"segments": [{"at": 0}]}, r"segments\[0\] needs a title"),
        ({"drops": [{"at": 0.5, "until": 0.4}]}, "until must come after at"),
        ({"drops": [{"at": 0.1, "mix": {"bored": 1}}]}, "unknown state 'bored'"),
        ({"segmnts": []}, "unknown scenario field"),
        ({"attendance": [{"share": 0.2}]}, "needs join and/or leave"),
        # Entries that are not objects: a clear refusal naming the entry, never an AttributeError.
        ({"drops": [0.5]}, r"drops\[0\] must be an object, e.g. \{\"at\""),
        ({"silent": ["0.4-0.6"]}, r"silent\[0\] must be an object"),
        ({"pauses": [None]}, r"pauses\[0\] must be an object"),
        ({"segments": ["Intro"]}, r"segments\[0\] must be an object"),
        ({"attendance": [[0.2, 0.3]]}, r"attendance\[0\] must be an object"),
        ({"drops": {"at": 0.5}}, "drops must be a list of objects"),
        ({"duration_s": float("inf")}, "duration_s must be a number of seconds"),
        ({"duration_s": True}, "duration_s must be a number of seconds"),
        ({"drops": [{"at": 0.1, "mix": {"distracted": float("nan")}}]}, r"mix.distracted must be a weight"),
        ({"name": 3}, "name must be a non-empty string"),
        (["lecture"], "a scenario is a name, a JSON file path or a dict"),
    ],
)
def test_bad_scenarios_say_what_to_write(spec, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario(spec)


def test_a_scenario_file_that_is_not_an_object_says_so(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ScenarioError, match="list.json: a scenario is a JSON object"):
        load_scenario(str(path))


@pytest.mark.slow
def test_engagement_is_consistent_with_the_state():
    _, msgs = _play(20, 600, "lecture", rate=2.0)
    by_state = {}
    for _, _, state, e in msgs:
        by_state.setdefault(state, []).append(e)
    means = {s: np.mean(v) for s, v in by_state.items()}
    assert means["focused"] > means["confused"] > means["distracted"] > means["away"]
    for state, mean in means.items():
        assert abs(mean - STATE_ENGAGEMENT[state]) < 15, state
    assert all(0 <= e <= 100 for *_, e in msgs)
    # Students stay in a state for a while (a Markov chain, not noise): few changes per minute.
    changes = sum(1 for a, b in zip(msgs, msgs[20:]) if a[1] == b[1] and a[2] != b[2])
    assert changes / (20 * 10) < 12


def test_same_seed_same_lesson_other_seed_other_lesson():
    assert _play(5, 120, "lecture", seed=3)[1] == _play(5, 120, "lecture", seed=3)[1]
    assert _play(5, 120, "lecture", seed=3)[1] != _play(5, 120, "lecture", seed=4)[1]


def test_scripted_drop_hits_the_chosen_share_of_students():
    c, msgs = _play(10, 600, "drop", rate=1.0)
    hit = {st.index for st in c.students if st.in_drop[0]}
    assert len(hit) == 8
    during = [e for s, i, _, e in msgs if 360 <= s < 450 and i in hit]
    before = [e for s, i, _, e in msgs if s < 300 and i in hit]
    assert np.mean(before) - np.mean(during) > 25


def test_attendance_and_silence_follow_the_script():
    c, msgs = _play(10, 300, "late-early")
    late = [st.index for st in c.students if st.join_s > 0]
    early = [st.index for st in c.students if st.leave_s < 300]
    assert len(late) == 3 and len(early) == 2
    assert min(s for s, i, *_ in msgs if i in late) == 90
    assert max(s for s, i, *_ in msgs if i in early) == 179
    _, msgs = _play(4, 300, "break")
    assert not [s for s, *_ in msgs if 120 <= s < 180]


def test_a_pausing_student_says_so_once_then_goes_quiet_until_resuming():
    sc = {"segments": [{"title": "All", "at": 0}], "pauses": [{"share": 0.5, "at": 0.25, "until": 0.5}],
          "attendance": []}
    c = Classroom.create(4, 400, load_scenario(sc), seed=1)
    sent = [(k, m.student.index, m.paused) for k in range(400) for m in c.messages(k, 1.0)]
    pausing = {st.index for st in c.students if st.in_pause[0]}
    assert len(pausing) == 2
    for i in pausing:
        mine = [(k, p) for k, j, p in sent if j == i]
        assert [k for k, p in mine if p] == [100]
        assert not [k for k, p in mine if 100 < k < 200]
        assert min(k for k, p in mine if k > 100) == 200
    assert len([1 for _, j, _ in sent if j not in pausing]) == 2 * 400


def test_rate_above_the_hub_limit_is_refused_before_connecting():
    with pytest.raises(ValueError, match="lower --rate or --speed"):
        asyncio.run(run_simulation("http://127.0.0.1:9", "c", "j", 2, rate_hz=5, duration_s=60, speed=10))


def test_wrong_join_code_is_a_clear_error(tmp_path):
    async def go():
        async with running_hub(data_dir=str(tmp_path)) as (hub, url):
            info = hub.create_class("Physics")
            await run_simulation(url, info["class_id"], "WRONG1", 2, rate_hz=1, duration_s=5)

    with pytest.raises(HubError, match="403"):
        asyncio.run(go())


@pytest.mark.slow
def test_simulation_through_the_hub_stores_every_state_with_segments(tmp_path):
    async def go():
        async with running_hub(data_dir=str(tmp_path)) as (hub, url):
            info = hub.create_class("Physics")
            result = await run_simulation(
                url, info["class_id"], info["join_code"], 4, rate_hz=2, duration_s=120,
                scenario={**SCENARIOS["lecture"], "attendance": []}, teacher_token=info["teacher_token"],
                seed=2, speed=6,
            )
            hub.store.flush()
            return result

    result = asyncio.run(go())
    with Store(tmp_path) as store:
        states = store.states(result.session_id)
        segments = store.segments(result.session_id)
        students = store.students(result.session_id)
        sessions = store.sessions()
    assert len(states) == result.sent == 4 * 2 * 120
    assert sorted(students["name"]) == [f"Sim student {i}" for i in range(1, 5)]
    assert list(segments["title"]) == ["Introduction", "Worked example", "New theory", "Exercises"]
    # Capture times follow the simulated timeline (120 s, compressed 6x); each student's seq increases.
    span = states.groupby("student_id")["t"].agg(["min", "max"])
    assert ((span["max"] - span["min"]) > 115).all()
    assert states.groupby("student_id")["seq"].apply(lambda s: s.is_monotonic_increasing).all()
    # States carry the segment the teacher had started at their simulated time, in order.
    firsts = states.groupby("segment")["t"].min().sort_values()
    assert list(firsts.index) == list(segments["segment_id"])
    assert np.allclose(np.diff(firsts.to_numpy()), 30, atol=1.0)
    assert sessions.set_index("session_id").loc[result.session_id, "ended"] > 0


@pytest.mark.slow
def test_cli_simulate_then_report(tmp_path):
    with HubProcess(tmp_path / "hub") as hub:
        info = hub.create_class("Chemistry")
        sim = subprocess.run(
            [sys.executable, "-m", "smartsession", "simulate", "--url", hub.url, "--class", info["class_id"],
             "--join", info["join_code"], "--students", "3", "--rate", "2", "--duration", "60",
             "--scenario", "lecture", "--teacher-token", info["teacher_token"], "--speed", "5", "--seed", "7"],
            capture_output=True, text=True, timeout=120,
        )
        assert sim.returncode == 0, sim.stderr
        summary = json.loads(sim.stdout.strip().splitlines()[-1])
        assert summary["students"] == 3 and 300 < summary["messages"] <= 360  # some may arrive late
    out = tmp_path / "out"
    rep = subprocess.run(
        [sys.executable, "-m", "smartsession", "report", summary["session_id"], "--data-dir", str(tmp_path / "hub"),
         "--out", str(out), "--format", "html,csv,parquet"],
        capture_output=True, text=True, timeout=120,
    )
    assert rep.returncode == 0, rep.stderr
    assert "3 students" in rep.stdout
    for name in ("report.html", "students.csv", "segments.csv", "class.csv", "moments.csv", "segments.parquet"):
        assert (out / name).stat().st_size > 0, name


def test_cli_simulate_without_a_hub_says_what_to_do():
    sim = subprocess.run(
        [sys.executable, "-m", "smartsession", "simulate", "--class", "c1", "--join", "ABC123", "--duration", "5"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"},
    )
    assert sim.returncode == 2
    assert "give --url" in sim.stderr
