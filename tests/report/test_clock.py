"""Issue 10: a student whose computer clock is wrong lands in the bins and segments of the hub's clock."""

from __future__ import annotations

import pytest

from smartsession.hub.store import Store
from smartsession.report.build import SessionData, build_report, clock_offsets, load_session

T0 = 1_800_000_000.0


def fill(store: Store, skew: float) -> None:
    """Two segments of a minute each; three students, one of whose clocks runs ``skew`` seconds behind."""
    store.add_class("c1", "Clocks")
    for sid in ("s1", "s2", "s3"):
        store.add_student("c1", sid, sid.upper())
    store.start_session("c1", "S", T0, "Lesson")
    store.start_segment("S", "seg1", "Intro", T0)
    store.start_segment("S", "seg2", "Waves", T0 + 60)
    seq = 0
    for k in range(120):  # one state a second each, received on the hub's clock
        received = T0 + k + 0.05
        for sid in ("s1", "s2", "s3"):
            seq += 1
            t = received - 0.05 - (skew if sid == "s3" else 0.0)
            store.add_state("S", {"class_id": "c1", "student_id": sid, "seq": seq, "t": t, "received": received,
                                  "state": "focused", "engagement": 80.0, "confidence": 0.9, "features": {},
                                  "segment": None, "paused": False})
    store.end_session("c1", T0 + 120)
    store.flush()


@pytest.mark.parametrize("source", ["store", "export"])
def test_a_student_with_a_wrong_clock_is_placed_on_the_hubs_clock(tmp_path, source):
    with Store(tmp_path) as store:
        fill(store, skew=1800.0)  # half an hour behind
        data = load_session(store, "S") if source == "store" else SessionData.from_export(
            __import__("json").loads(store.session_json("S")))
        assert data.clock_fix == {"s3": pytest.approx(1800.05)}
        assert data.lesson_start() == pytest.approx(T0)  # not half an hour before the lesson
        report = build_report(data, names=True)
        segments = report.tables()["segments"].set_index("segment_id")
        assert set(segments.index) == {"seg1", "seg2"}  # nobody "before the first segment"
        assert list(segments.loc[["seg1", "seg2"], "students"]) == [3, 3]
        assert report.tables()["students"]["offset_s"].max() < 125


def test_delays_and_time_compressed_simulations_are_not_clock_errors():
    import pandas as pd

    live = pd.DataFrame({"student_id": ["a"] * 100, "offset": [0.05 + (i % 7) * 0.1 for i in range(100)]})
    assert clock_offsets(live) == {}  # network delay, however jittery, is not a wrong clock
    # A simulation at 10x: capture times run ahead of the hub, the offset drifts by minutes: left alone.
    compressed = pd.DataFrame({"student_id": ["a"] * 600, "offset": [600 - s * 0.9 for s in range(600)]})
    assert clock_offsets(compressed) == {}
    resent = pd.DataFrame({"student_id": ["a"] * 100,
                           "offset": [-3600.0 + 0.05] * 90 + [-3600 + 30.0] * 10})  # a backlog resent late
    assert clock_offsets(resent) == {"a": pytest.approx(-3599.95)}
