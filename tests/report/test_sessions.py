"""The report on real sessions: scripted lessons played through a real hub, read back from its SQLite store.

The scripts say where engagement drops, who arrives late and which segment is silent; the report must find it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartsession.report import ReportSettings, build_report
from smartsession.simulate import load_scenario


def test_every_message_the_simulator_sent_is_stored(lessons, store):
    for name, lesson in lessons.items():
        if lesson.result is None:
            continue
        states = store.states(lesson.session_id)
        assert len(states) == lesson.result.sent, name
        assert set(states["student_id"]) == set(lesson.result.students), name


def test_segments_never_overlap_and_tile_the_session(lessons, store):
    # Simulated lessons are time-compressed: the hub stamps segment starts on its own clock, states carry the
    # simulated timeline's; the report places the segments on the states' clock without overlap or gap.
    for name, lesson in lessons.items():
        if lesson.result is None:
            continue
        report = build_report(store, lesson.session_id)
        seg = report.segments.sort_values("start")
        states = store.states(lesson.session_id)
        assert (seg["end"] > seg["start"]).all(), (name, seg[["title", "start", "end"]])
        assert (seg["end"].to_numpy()[:-1] == seg["start"].to_numpy()[1:]).all(), (name, seg[["title", "start", "end"]])
        assert seg["start"].iloc[0] <= states["t"].min() and seg["end"].iloc[-1] >= states["t"].max(), name
        if not report.windows:
            # In the scripted order, each where the script put it (within a few seconds of its simulated start).
            scripted = lesson.result.segments
            assert list(seg["title"]) == [s["title"] for s in scripted], name
            for s, start in zip(scripted, seg["start"]):
                assert abs(start - s["t"]) < 5, (name, s["title"])
        html = report.to_html()
        assert "This session has no measurements" not in html, name


def test_finds_the_segment_and_the_moment_engagement_dropped(lessons, store):
    lesson = lessons["drop"]
    report = build_report(store, lesson.session_id)
    scripted = lesson.result.drops[0]

    # The segment the script made dull comes first in the ranking, well below the class's baseline.
    ranked = report.ranked_segments()
    assert ranked["title"].iloc[0] == "Long derivation"
    assert ranked["drop"].iloc[0] > 10
    assert ranked["students"].iloc[0] == 15

    # The largest detected drop is the scripted moment (within half a window), in that segment.
    assert len(report.drops) >= 1
    top = report.drops.iloc[0]
    assert abs(top["t"] - scripted["at"]) <= report.settings.window_s / 2
    assert report.segment_title(top["segment_id"]) == "Long derivation"
    assert top["drop"] > 15
    # Most of the students the script hit are counted as involved; nobody is counted twice.
    assert top["students"] == 15
    assert 0.6 * len(scripted["students"]) <= top["involved"] <= 15

    # Per-student: the scripted students fell during the drop, on average much more than the others.
    bins = report.student_series
    during = bins[(bins["t"] >= scripted["at"] + 30) & (bins["t"] < scripted["until"])]
    before = bins[bins["t"] < scripted["at"]]
    hit = during["student_id"].isin(scripted["students"])
    fall_hit = before[before["student_id"].isin(scripted["students"])]["engagement"].mean() - during[hit]["engagement"].mean()
    assert fall_hit > 20


def test_segment_table_shows_counts_spread_and_state_shares(lessons, store):
    report = build_report(store, lessons["drop"].session_id)
    seg = report.segments.set_index("title")
    assert list(report.segments.sort_values("start")["title"]) == [
        "Introduction", "Worked example", "Long derivation", "Exercises"
    ]
    shares = seg[[c for c in seg.columns if c.startswith("share_")]]
    assert np.allclose(shares.sum(axis=1), 1.0)
    # The dull segment is where students were distracted, drowsy or away.
    low = seg.loc["Long derivation", ["share_distracted", "share_drowsy", "share_away"]].sum()
    assert low > seg.loc["Introduction", ["share_distracted", "share_drowsy", "share_away"]].sum() + 0.2
    assert (seg["spread"] > 0).all()
    # Honest uncertainty: each segment says how many students and minutes it rests on.
    assert (seg["students"] == 15).all()
    assert seg["data_minutes"].between(2.0, 2.6).all()
    assert (seg["student_minutes"] > seg["data_minutes"] * 14).all()
    assert (seg["note"] == "").all()


def test_single_student_gets_counts_but_no_aggregates(lessons, store):
    report = build_report(store, lessons["single"].session_id)
    assert report.n_students == 1
    assert (report.segments["students"] == 1).all()
    assert report.segments["mean"].isna().all() and not report.segments["shown"].any()
    assert report.segments["note"].str.contains("fewer than 3 students").all()
    html = report.to_html()
    assert "fewer than 3 students: aggregates not shown" in html
    # The class series is still there (it is the one student's), so the teacher sees the lesson's shape.
    assert report.class_series["students"].max() == 1


def test_students_joining_late_and_leaving_early(lessons, store):
    lesson = lessons["late_early"]
    report = build_report(store, lesson.session_id, settings=ReportSettings(window_s=30))
    sc = load_scenario("late-early")
    duration = lesson.result.duration_s
    series = report.class_series.set_index("offset_s")["students"]
    join_s = sc["attendance"][0]["join"] * duration
    leave_s = sc["attendance"][1]["leave"] * duration
    # 30% of six students (2) arrive at 30%; 20% (1) leave at 60%: the counts follow the script.
    assert series[series.index < join_s - 10].max() == 4
    assert series[(series.index > join_s + 10) & (series.index < leave_s - 10)].min() == 6
    assert series[series.index > leave_s + 10].max() == 5
    firsts = report.student_series.groupby("student_id")["t"].min() - report.t0
    assert (firsts > join_s - report.settings.bin_s).sum() == 2
    # Labels follow arrival order, so the late two are the last two.
    late = firsts.sort_values().index[-2:]
    assert sorted(report.labels[s] for s in late) == ["Student 5", "Student 6"]


def test_segment_without_data_is_marked_and_left_out_of_the_ranking(lessons, store):
    report = build_report(store, lessons["break"].session_id)
    seg = report.segments.set_index("title")
    assert seg.loc["Break", "students"] == 0 and seg.loc["Break", "messages"] == 0
    assert seg.loc["Break", "note"] == "no data"
    assert np.isnan(seg.loc["Break", "rank"])
    assert report.ranked_segments()["title"].iloc[-1] == "Break"
    assert seg.loc[["Lecture", "Discussion"], "students"].eq(5).all()
    # The silent stretch is a gap in the class series, not a fall to zero: no drop is reported in it.
    gap = report.class_series[report.class_series["students"] == 0]
    assert len(gap) > 10 and gap["engagement"].isna().all()
    start, end = seg.loc["Break", "start"], seg.loc["Break", "end"]
    assert not report.drops["t"].between(start + 10, end - 10).any()


def test_paused_students_are_not_measured_while_paused(lessons, store):
    states = store.states(lessons["pauses"].session_id)
    # The student page sends one paused state when a student pauses, then nothing until they resume.
    marks = states[states["paused"]]
    assert len(marks) == 2 and (marks["engagement"] == 0).all()
    report = build_report(store, lessons["pauses"].session_id)
    assert report.messages == len(states) - 2
    present = report.class_series.set_index("offset_s")["students"]
    assert present[present.index < 85].min() == 5
    assert present[(present.index >= 95) & (present.index < 175)].max() == 3
    assert present[present.index >= 185].min() == 5


def test_session_without_segments_uses_fixed_windows(lessons, store):
    report = build_report(store, lessons["no_segments"].session_id)
    assert report.windows
    assert list(report.segments["title"]) == ["0-5 min", "5-10 min", "10-15 min"]
    assert report.segments["students"].iloc[:2].eq(4).all()
    assert "fixed windows" in report.to_html()


def test_empty_session(lessons, store):
    report = build_report(store, lessons["empty"].session_id)
    assert report.empty and report.n_students == 0 and report.messages == 0
    assert report.drops.empty and report.peaks.empty
    assert report.segments["note"].eq("no data").all()
    html = report.to_html()
    assert "This session has no measurements" in html
    assert "Nobody came" in html


def test_unknown_session_says_which_exist(lessons, store):
    with pytest.raises(LookupError, match="known sessions"):
        build_report(store, "no-such-session")


def test_same_report_from_the_store_and_from_an_export(lessons, store, tmp_path):
    sid = lessons["drop"].session_id
    from_store = build_report(store, sid)
    for fmt in ("csv", "parquet", "json"):
        path = store.export_session(sid, tmp_path / f"export.{fmt}", format=fmt)
        from_export = build_report(path)
        pd.testing.assert_frame_equal(
            from_store.class_series.reset_index(drop=True), from_export.class_series.reset_index(drop=True),
            check_dtype=False,
        )
        pd.testing.assert_frame_equal(
            from_store.drops.drop(columns="segment_id"), from_export.drops.drop(columns="segment_id"),
            check_dtype=False,
        )
    # The JSON export carries the segments too, so titles and ranking survive.
    assert list(build_report(tmp_path / "export.json").ranked_segments()["title"]) == list(
        from_store.ranked_segments()["title"]
    )
