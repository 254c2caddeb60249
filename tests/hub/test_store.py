"""The stores on their own, SQLite and PostgreSQL alike: batched writes, commit callbacks, reading back and
exporting a session."""

from __future__ import annotations

import json
import threading

import pandas as pd
import pytest

from smartsession.hub.pgstore import open_store
from smartsession.schema import SHARED_FEATURES


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a store lives: a data directory, or a fresh PostgreSQL database on the session's server."""
    if request.param == "sqlite":
        return str(tmp_path / "data")
    return request.getfixturevalue("pg_url")


def state(student, seq, **kw):
    return {"class_id": "c1", "student_id": student, "seq": seq, "t": 100.0 + seq, "received": 100.5 + seq,
            "state": "focused", "engagement": 50.0 + seq, "confidence": 0.5, "features": {"yaw": 1.0 * seq},
            "segment": "seg1", "paused": False, **kw}


def fill(store):
    store.add_class("c1", "Physics")
    store.add_student("c1", "s1", "Ada")
    store.add_student("c1", "s2", "Bob")
    store.start_session("c1", "S1", 100.0, "Lecture 1")
    store.start_segment("S1", "seg1", "Intro", 100.0)
    committed = []
    for seq in range(1, 6):
        store.add_state("S1", state("s1", seq), lambda seq=seq: committed.append(seq))
    store.add_state("S1", state("s2", 1, paused=True, features={}))
    store.start_segment("S1", "seg2", "Waves", 110.0)
    store.add_command("S1", "c1", 110.0, "start_segment", {"title": "Waves"})
    store.update_student("c1", "s2", "Bob B.", True)
    store.start_session("c1", "S2", 200.0)  # ends S1 and its open segment
    store.flush()
    return committed


def test_store_reads_back_what_it_wrote(target, tmp_path):
    with open_store(target) as store:
        committed = fill(store)
        assert committed == [1, 2, 3, 4, 5]
        sessions = store.sessions()
        assert list(sessions.session_id) == ["S1", "S2"] and sessions.ended.iloc[0] == 200.0
        assert pd.isna(sessions.ended.iloc[1])
        states = store.states("S1")
        assert list(states.columns) == ["session_id", "class_id", "student_id", "seq", "t", "received", "state",
                                        "engagement", "confidence", "segment", "paused", *SHARED_FEATURES]
        assert len(states) == 6 and states.paused.dtype == bool and states.pitch.isna().all()
        assert states[states.student_id == "s2"].yaw.isna().all()
        seg = store.segments("S1")
        assert list(seg.segment_id) == ["seg1", "seg2"] and list(seg["end"]) == [110.0, 200.0]
        assert store.commands("S1").args.iloc[0] == {"title": "Waves"}
        students = store.students("S1")
        assert students.to_dict("records") == [{"student_id": "s1", "name": "Ada", "hidden": False},
                                               {"student_id": "s2", "name": "Bob B.", "hidden": True}]
        assert store.latest_states("c1")["s1"]["seq"] == 5
        assert store.open_session("c1")[0] == "S2"
    store.close()  # closing twice is harmless


def test_export_csv_parquet_json(target, tmp_path):
    with open_store(target) as store:
        fill(store)
        csv = pd.read_csv(store.export_session("S1", tmp_path / "s.csv", "csv"))
        parquet = pd.read_parquet(store.export_session("S1", tmp_path / "s.parquet", "parquet"))
        doc = json.loads(store.export_session("S1", tmp_path / "s.json", "json").read_text())
        assert len(csv) == len(parquet) == len(doc["states"]) == 6
        assert list(parquet.columns) == list(csv.columns) == list(store.states("S1").columns)
        assert parquet.paused.dtype == bool
        assert doc["session"]["title"] == "Lecture 1" and [s["title"] for s in doc["segments"]] == ["Intro", "Waves"]
        with pytest.raises(ValueError, match="format must be"):
            store.export_session("S1", tmp_path / "x.xlsx", "xlsx")
        with pytest.raises(KeyError, match="no session"):
            store.export_session("nope", tmp_path / "x.csv")


def test_writes_are_batched_off_the_caller_thread(target, tmp_path):
    with open_store(target) as store:
        threads = set()
        for seq in range(5000):
            store.add_state("S", state("s1", seq), (lambda: threads.add(threading.current_thread().name)))
        store.flush()
        assert threads == {"smartsession-store"}
        assert len(store.states("S")) == 5000
    with open_store(target) as again:  # survives reopening
        assert len(again.states("S")) == 5000


def test_history_bins_a_session_by_receive_time(target, tmp_path):
    with open_store(target) as store:
        store.start_session("c1", "S1", 100.0)
        store.start_segment("S1", "seg1", "Intro", 100.0)
        for i, (student, received, engagement, kind, paused) in enumerate([
            ("s1", 100.2, 40.0, "focused", False),
            ("s1", 100.7, 50.0, "distracted", False),  # same second: the later one counts
            ("s2", 100.9, 90.0, "focused", False),
            ("s2", 101.3, 10.0, "away", True),  # paused: left out
            ("s1", 102.1, 70.0, "focused", False),
        ]):
            store.add_state("S1", state(student, i + 1, received=received, engagement=engagement, state=kind,
                                        paused=paused))
        store.start_segment("S1", "seg2", "Waves", 102.0)
        store.flush()
        doc = store.history("S1")
        assert doc["students"] == {"s1": [[100.7, 50.0, "distracted"], [102.1, 70.0, "focused"]],
                                   "s2": [[100.9, 90.0, "focused"]]}
        assert doc["class"] == [[100.9, 70.0], [102.1, 70.0]]  # each bin's mean, at its latest receive time
        assert [(s["segment_id"], s["end"]) for s in doc["segments"]] == [("seg1", 102.0), ("seg2", None)]
        assert store.history("S1", every=5)["class"] == [[102.1, 80.0]]  # s1 at 70 and s2 at 90
        assert store.history("nope") == {"session_id": "nope", "every": 1.0, "class": [], "students": {},
                                         "segments": []}
        with pytest.raises(ValueError, match="every"):
            store.history("S1", every=0)
