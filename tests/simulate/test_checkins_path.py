"""The whole check-in path without cameras: the simulator's students answer check-ins through a real hub; the
report shows the answers per segment and the agreement table; ``smartsession labels`` turns them into rows."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pandas as pd
import pytest

from smartsession.dataset.classroom import attention_agreement, labelled_rows
from smartsession.hub.standalone import running_hub
from smartsession.hub.store import Store
from smartsession.report.analysis import ReportSettings
from smartsession.report.build import build_report
from smartsession.simulate import load_scenario, run_simulation
from smartsession.simulate.runner import simulated_answer
from smartsession.simulate.scenario import ScenarioError


def test_simulated_answers_agree_with_simulated_attention_as_often_as_asked():
    import random

    rng = random.Random(1)
    said = [simulated_answer("mind", "focused", 0.8, rng) for _ in range(2000)]
    assert 0.77 < said.count(0) / len(said) < 0.83
    assert {simulated_answer("sense", "away", 1.0, rng) for _ in range(50)} == {2}
    with pytest.raises(ScenarioError, match="answers must be an object"):
        load_scenario({"segments": [], "answers": {"agree": 0.5, "typo": 1}})
    with pytest.raises(ScenarioError, match="kind must be one of"):
        load_scenario({"segments": [], "checkins": [{"at": 0.5, "kind": "poll"}]})


@pytest.fixture(scope="module")
def lesson(tmp_path_factory):
    data = tmp_path_factory.mktemp("hub")

    async def main():
        async with running_hub(data_dir=data, checkin_min_interval=1) as (hub, url):
            info = hub.create_class("Simulated physics")
            result = await run_simulation(url, info["class_id"], info["join_code"], 12, rate_hz=2.0,
                                          duration_s=120, scenario="checkins",
                                          teacher_token=info["teacher_token"], seed=3, speed=6)
            hub.store.flush()
            return info, result

    info, result = asyncio.run(asyncio.wait_for(main(), 300))
    return data, info, result


def test_the_report_puts_answers_beside_the_camera_and_shows_the_agreement(lesson):
    data, info, result = lesson
    assert result.answers > 20
    with Store(data) as store:
        report = build_report(store, result.session_id, names=False)
        checkins = store.checkins(result.session_id)
    assert list(checkins.kind) == ["mind", "sense", "mind", "mind"]
    assert {c["segment"] for c in report.checkins} >= {"seg1", "seg2", "seg3"}
    agree = report.agreement
    assert agree["enough"] and agree["n"] >= 10
    assert sum(sum(r.values()) for r in agree["table"].values()) == agree["n"]
    html = report.to_html()
    assert "What the students said, segment by segment" in html and "Cohen" in html
    assert "Where was your mind just now?" in html
    few = build_report(Store(data), result.session_id, settings=ReportSettings(min_answers=10_000))
    assert "Not enough answers" in few.to_html()


def test_labelled_rows_only_from_research_answers_with_the_states_before_them(lesson, tmp_path):
    data, info, result = lesson
    with Store(data) as store:
        rows = labelled_rows(store, info["class_id"])
        n_answers = len(store.answers(result.session_id))
    assert 0 < len(rows) == n_answers  # the scenario's check-ins and students all agreed to research use
    assert set(rows.kind) == {"mind", "sense"} and (rows.states > 0).all()
    assert not set(result.students) & set(rows.pseudonym)  # never the student's id
    agree = attention_agreement(rows)
    assert agree["n"] > 0 and 0 <= agree["agreement"] <= 1
    out = tmp_path / "rows.csv"
    done = subprocess.run([sys.executable, "-m", "smartsession", "labels", "--data-dir", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "labelled rows" in done.stdout and len(pd.read_csv(out)) == len(rows)


def test_no_row_without_both_the_teachers_and_the_students_agreement(tmp_path):
    state = {"class_id": "c1", "seq": 1, "t": 99.0, "received": 99.0, "state": "focused", "engagement": 80.0,
             "confidence": 0.9, "features": {"yaw": 1.0}, "segment": None, "paused": False}
    ask = {"session_id": "S1", "kind": "mind", "question": "Where was your mind just now?",
           "options": ["on the lesson", "somewhere else"], "asked": 90.0, "closes": 150.0, "segment": None}
    with Store(tmp_path) as store:
        store.start_session("c1", "S1", 80.0)
        for sid in ("a", "b"):
            store.add_state("S1", {**state, "student_id": sid})
        store.add_checkin("c1", {**ask, "checkin_id": "ck1", "research": True})
        store.add_checkin("c1", {**ask, "checkin_id": "ck2", "research": False})
        for ck in ("ck1", "ck2"):
            store.add_answer("c1", {"session_id": "S1", "checkin_id": ck, "student_id": "a", "option": 0,
                                    "received": 100.0, "research": True})
            store.add_answer("c1", {"session_id": "S1", "checkin_id": ck, "student_id": "b", "option": 0,
                                    "received": 100.0, "research": False})
        store.flush()
        rows = labelled_rows(store)
    assert list(zip(rows.checkin_id, rows.states, rows.camera_attending)) == [("ck1", 1, True)]
