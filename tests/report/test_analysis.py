"""The report's computations on DataFrames with the store's columns: exact answers on constructed sessions.

These pin down the method (bins, baseline, drop detector, group size, segment resolution) where a
simulation's randomness would blur it; the real-hub sessions are in test_sessions.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartsession.report import ReportSettings, SessionData, build_report
from smartsession.report.analysis import BEFORE_SEGMENTS, state_counts

T0 = 1_800_000_000.0


def lesson(students=10, seconds=1200, rate=1.0, drop=None, seed=0, paused=None):
    """States of a steady class (engagement ~75 +- 6) where ``drop=(start, end, k, points)`` lowers k students."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, seconds, 1 / rate)
    rows = []
    for i in range(students):
        e = 75 + rng.normal(0, 6, len(t))
        state = np.where(e > 50, "focused", "distracted").astype(object)
        if drop and i < drop[2]:
            inside = (t >= drop[0]) & (t < drop[1])
            e[inside] -= drop[3]
            state[inside] = "distracted"
        rows.append(pd.DataFrame({
            "session_id": "s1", "class_id": "c1", "student_id": f"st{i:02d}", "seq": np.arange(len(t)),
            "t": T0 + t, "received": T0 + t + 0.05, "state": state, "engagement": np.clip(e, 0, 100),
            "confidence": 0.9, "segment": None, "paused": False,
        }))
    df = pd.concat(rows, ignore_index=True)
    if paused:
        sid, a, b = paused
        df.loc[(df["student_id"] == sid) & df["t"].between(T0 + a, T0 + b, inclusive="left"), "paused"] = True
    return df


def segments(*spec):
    """``segments(("Intro", 0), ("Proof", 400), ...)`` -> the store's segments frame (last one open)."""
    starts = [T0 + s for _, s in spec]
    return pd.DataFrame({
        "segment_id": [f"seg{i + 1}" for i in range(len(spec))],
        "title": [title for title, _ in spec],
        "start": starts,
        "end": starts[1:] + [np.nan],
    })


@pytest.mark.slow
def test_a_step_down_is_found_at_its_time_with_its_size_and_students():
    df = lesson(drop=(600, 900, 8, 30))
    report = build_report(SessionData(df, segments(("Intro", 0), ("Proof", 600), ("Exercises", 900))))
    assert len(report.drops) == 1
    d = report.drops.iloc[0]
    assert d["offset_s"] == 600 and report.segment_title(d["segment_id"]) == "Proof"
    assert d["drop"] == pytest.approx(24, abs=2)  # 8 of 10 students fell 30 points
    assert (d["students"], d["involved"]) == (10, 8)
    ranked = report.ranked_segments()
    assert list(ranked["title"]) == ["Proof", "Intro", "Exercises"]
    assert ranked["drop"].iloc[0] == pytest.approx(24, abs=2)
    assert report.baseline == pytest.approx(75, abs=1.5)


def test_a_steady_class_raises_no_drop_and_no_peak():
    report = build_report(SessionData(lesson(seed=3)))
    assert report.drops.empty and report.peaks.empty


def test_a_rise_is_a_peak_not_a_drop():
    df = lesson()
    df.loc[df["t"].between(T0 + 500, T0 + 600), "engagement"] = 98
    report = build_report(SessionData(df))
    assert report.drops.empty or report.drops["offset_s"].min() >= 600
    assert 500 <= report.peaks["offset_s"].iloc[0] < 600
    assert report.peaks["above_baseline"].iloc[0] > 15


def test_paused_rows_are_not_measurements():
    df = lesson(students=3, seconds=300, paused=("st00", 0, 300))
    report = build_report(SessionData(df))
    assert report.n_students == 2
    assert report.messages == 2 * 300


def test_groups_below_the_minimum_show_counts_only():
    df = lesson(students=4, seconds=600)
    df = df[~((df["student_id"] != "st00") & (df["t"] >= T0 + 300))]  # only st00 stays for the second half
    report = build_report(SessionData(df, segments(("A", 0), ("B", 300))), settings=ReportSettings(min_group=3))
    seg = report.segments.set_index("title")
    assert seg.loc["A", "shown"] and seg.loc["A", "students"] == 4
    assert not seg.loc["B", "shown"] and seg.loc["B", "students"] == 1
    assert np.isnan(seg.loc["B", "mean"]) and np.isnan(seg.loc["B", "share_focused"])
    assert "fewer than 3" in seg.loc["B", "note"]
    assert "B" not in report.figures()["states"].data[0].y


def test_little_data_is_marked():
    df = lesson(students=5, seconds=600)
    report = build_report(SessionData(df, segments(("Long", 0), ("Short", 570))))
    seg = report.segments.set_index("title")
    assert seg.loc["Short", "note"] == "little data: 0.5 min"
    assert seg.loc["Long", "note"] == ""


def test_rows_before_the_first_segment_and_unknown_segments_get_their_own_rows():
    df = lesson(students=3, seconds=300)
    df.loc[df["t"] >= T0 + 200, "segment"] = "seg9"  # named by messages, missing from the table
    report = build_report(SessionData(df, segments(("Main", 100))))
    by_id = report.segments.set_index("segment_id")
    assert by_id.loc[BEFORE_SEGMENTS, "title"] == "Before the first segment"
    assert by_id.loc[BEFORE_SEGMENTS, "messages"] == 3 * 100
    assert by_id.loc["seg1", "messages"] == 3 * 100 and by_id.loc["seg9", "messages"] == 3 * 100
    assert by_id.loc["seg9", "title"] == "seg9"


def test_segments_on_another_clock_are_placed_where_their_messages_are():
    # A time-compressed simulation: the hub stamped segment starts with its own (later) clock.
    df = lesson(students=3, seconds=600)
    # B starts in the middle of a 5 s bin (as a simulated segment mostly does).
    df["segment"] = np.where(df["t"] < T0 + 302, "seg1", "seg2")
    table = pd.DataFrame({"segment_id": ["seg1", "seg2"], "title": ["A", "B"],
                          "start": [T0 + 5000, T0 + 5030], "end": [T0 + 5030, T0 + 5060]})
    report = build_report(SessionData(df, table))
    seg = report.segments.set_index("title")
    assert seg.loc["A", "start"] == T0 and seg.loc["B", "start"] == pytest.approx(T0 + 302)
    assert seg.loc["B", "duration_min"] == pytest.approx(5, abs=0.1)
    assert seg.loc["A", "end"] == seg.loc["B", "start"]  # no overlap: A ends where B begins


def test_a_silent_segment_on_another_clock_keeps_its_place_between_its_neighbours():
    # Compressed 10x: 300 s of lesson per 30 s of hub clock; nobody sent anything during the break.
    df = lesson(students=3, seconds=900)
    df = df[(df["t"] < T0 + 300) | (df["t"] >= T0 + 600)].copy()
    df["segment"] = np.where(df["t"] < T0 + 300, "seg1", "seg3")
    table = pd.DataFrame({"segment_id": ["seg1", "seg2", "seg3"], "title": ["A", "Break", "C"],
                          "start": [T0 + 5000, T0 + 5030, T0 + 5060], "end": [T0 + 5030, T0 + 5060, T0 + 5090]})
    seg = build_report(SessionData(df, table)).segments.set_index("title")
    assert list(seg.sort_values("start").index) == ["A", "Break", "C"]
    assert seg.loc["Break", "start"] == pytest.approx(T0 + 300) and seg.loc["Break", "end"] == pytest.approx(T0 + 600)
    assert seg.loc["Break", "messages"] == 0
    assert_tiles(seg.reset_index())


def assert_tiles(segments: pd.DataFrame) -> None:
    """Segments in start order, each ending exactly where the next begins, none empty or reversed."""
    seg = segments.sort_values("start")
    assert (seg["end"] > seg["start"]).all(), seg[["title", "start", "end"]]
    assert (seg["end"].to_numpy()[:-1] == seg["start"].to_numpy()[1:]).all(), seg[["title", "start", "end"]]


@pytest.mark.parametrize("case", ["lead_in", "unknown", "open_last"])
def test_segments_tile_the_session(case):
    df = lesson(students=3, seconds=600)
    if case == "unknown":
        df.loc[df["t"] >= T0 + 450, "segment"] = "seg9"
    table = segments(("Intro", 100 if case == "lead_in" else 0), ("Proof", 300))
    report = build_report(SessionData(df, table))
    assert_tiles(report.segments)
    assert report.segments["start"].min() == pytest.approx(T0)
    assert report.segments["end"].max() >= df["t"].max()


def test_fixed_windows_without_segments():
    report = build_report(SessionData(lesson(students=3, seconds=720)), settings=ReportSettings(window_min=5))
    assert report.windows
    assert list(report.segments["title"]) == ["0-5 min", "5-10 min", "10-15 min"]
    assert list(report.segments["messages"]) == [900, 900, 360]


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [1, 25, 60, 130])
def test_very_short_sessions(seconds):
    report = build_report(SessionData(lesson(students=3, seconds=seconds)))
    assert report.n_students == 3 and "<html" in report.to_html()


def test_missing_columns_say_what_to_pass():
    with pytest.raises(ValueError, match="missing column.*engagement.*Store.states"):
        build_report(SessionData(pd.DataFrame({"student_id": ["a"], "t": [T0], "state": ["focused"]})))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="window_s at least two bins"):
        ReportSettings(bin_s=5, window_s=5)


def test_counts_keep_every_message_weighted_the_same():
    df = lesson(students=4, seconds=100, rate=5)
    counts = state_counts(df, T0, ReportSettings())
    assert counts["n"].sum() == len(df)
    assert counts["engagement_sum"].sum() == pytest.approx(df["engagement"].sum())


@pytest.mark.slow
def test_exports_are_anonymised_unless_names_are_asked_for(tmp_path):
    df = lesson(students=3, seconds=120)
    students = pd.DataFrame({"student_id": ["st00", "st01", "st02"], "name": ["Ada Zorblax", "Bo Quintavius", "Cy Wexford"], "hidden": False})
    report = build_report(SessionData(df, students=students))
    written = report.write(tmp_path / "anon", ["html", "csv"])
    text = "".join(p.read_text() for p in written)
    assert "Zorblax" not in text and "Wexford" not in text and "st00" not in text
    assert set(pd.read_csv(tmp_path / "anon" / "students.csv")["student"]) == {"Student 1", "Student 2", "Student 3"}
    named = build_report(SessionData(df, students=students), names=True)
    named.write(tmp_path / "named", ["csv"])
    assert set(pd.read_csv(tmp_path / "named" / "students.csv")["student"]) == {"Ada Zorblax", "Bo Quintavius", "Cy Wexford"}
    with pytest.raises(ValueError, match="choose from html, csv, parquet"):
        report.write(tmp_path, ["pdf"])


def test_titles_are_text_not_markup():
    df = lesson(students=3, seconds=120)
    page = build_report(SessionData(df, segments(("<img src=x onerror=alert(1)>", 0)))).to_html()
    assert "<img src=x" not in page  # escaped in the tables, \u003c-escaped in the figures' JSON
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
