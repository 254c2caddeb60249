"""The teacher's class model on hub events: cards, presence and staleness, counts, class series, segment bands."""

from __future__ import annotations

import pytest

from smartsession.pages.classview import ClassView, sparkline_points
from smartsession.schema import StateMessage


def state(sid, t, st="focused", engagement=80.0, paused=False, seq=0):
    event = StateMessage("c1", sid, seq, t - 0.05, st, engagement, 0.9, {"yaw": 1.0}, paused=paused).to_dict()
    event["received"] = t
    return event


def klass(session="S1", segment=None, emotions=True):
    return {"type": "class", "class_id": "c1", "title": "Maths", "session_id": session, "segment": segment, "emotions": emotions}


def snapshot(students=(), **kw):
    return {**klass(**kw), "type": "snapshot", "v": 1, "students": list(students)}


@pytest.fixture
def view():
    v = ClassView("c1", stale_after=10)
    v.apply(snapshot(), 0.0)
    return v


def test_snapshot_restores_students_with_their_latest_state():
    v = ClassView("c1")
    assert not v.ready
    changed = v.apply(
        snapshot(
            [
                {"student_id": "a", "name": "Ana", "hidden": False, "presence": "connected", "last_seen": 99.0,
                 "state": state("a", 99.0, "drowsy", 35)},
                {"student_id": "b", "name": "", "hidden": True, "presence": "disconnected", "last_seen": 50.0, "state": None},
            ]
        ),
        100.0,
    )
    assert v.ready and changed == {"a", "b"} and v.title == "Maths" and v.session_id == "S1"
    card = v.card("a", 100.0)
    assert card["label"] == "Ana" and card["state"] == "drowsy" and card["engagement"] == 35
    assert card["presence"] == "connected" and card["last_seen"] == 99.0
    assert v.card("b", 100.0)["label"] == "b"
    assert [c.student_id for c in v.visible()] == ["a"]


def test_a_snapshot_for_another_class_is_refused():
    with pytest.raises(ValueError, match="another|class"):
        ClassView("c1").apply({**snapshot(), "class_id": "c2"}, 0.0)


def test_states_update_only_their_card_and_unknown_events_are_ignored(view):
    assert view.apply(state("a", 1.0), 1.0) == {"a"}
    assert view.apply(state("b", 1.2, "away", 10), 1.2) == {"b"}
    assert view.apply({"type": "from-the-future", "x": 1}, 1.3) == set()
    assert view.apply({"type": "result", "id": 3, "ok": True}, 1.3) == set()
    assert view.card("b", 1.5)["state"] == "away"


def test_pause_presence_and_staleness(view):
    view.apply(state("a", 1.0), 1.0)
    view.apply({"type": "presence", "student_id": "a", "presence": "connected", "last_seen": 1.0, "name": "Ana"}, 1.0)
    assert view.card("a", 2.0)["label"] == "Ana"
    view.apply(state("a", 2.0, paused=True, seq=1), 2.0)
    assert view.card("a", 2.5)["presence"] == "paused"
    # A paused student may stay silent for as long as they like.
    assert view.card("a", 500.0)["presence"] == "paused"
    view.apply(state("a", 600.0, seq=2), 600.0)
    assert view.card("a", 601.0)["presence"] == "connected"
    # Silence while "connected" turns the card to disconnected after stale_after seconds, once.
    assert view.expire(609.0) == set()
    assert view.expire(611.0) == {"a"} and view.card("a", 611.0)["presence"] == "disconnected"
    assert view.expire(612.0) == set()
    view.apply(state("a", 613.0, seq=3), 613.0)
    assert view.card("a", 613.0)["presence"] == "connected"
    view.apply({"type": "presence", "student_id": "a", "presence": "disconnected", "last_seen": 614.0, "name": ""}, 614.0)
    assert view.card("a", 614.0)["presence"] == "disconnected"
    # A late state from the old socket does not bring a student the hub saw leave back to life.
    view.apply(state("a", 614.1, seq=4), 614.1)
    assert view.card("a", 614.2)["presence"] == "disconnected"


def test_counts_and_class_engagement_use_active_visible_students(view):
    view.apply(state("a", 10.0, "focused", 90), 10.0)
    view.apply(state("b", 10.0, "away", 10), 10.0)
    view.apply(state("c", 10.0, "focused", 50, paused=True), 10.0)
    view.apply(state("d", 10.0, "drowsy", 0), 10.0)
    view.apply({"type": "student", "student_id": "d", "name": "Dee", "hidden": True}, 10.0)
    counts = view.counts(11.0)
    assert counts["focused"] == 1 and counts["away"] == 1 and counts["paused"] == 1 and counts["drowsy"] == 0
    assert view.class_engagement(11.0) == pytest.approx(50.0)
    assert view.class_engagement(100.0) is None  # everyone went silent


def test_history_keeps_one_point_per_second_and_sparkline_scale(view):
    for i in range(50):
        view.apply(state("a", 100 + i * 0.2, engagement=float(i), seq=i), 100 + i * 0.2)
    hist = view.timeline("a")
    assert len(hist) == 10 and hist[-1][1] == 49.0
    pts = view.card("a", 110.0)["spark"].split()
    assert len(pts) == 10
    assert sparkline_points([0, 100], width=10, height=20) == "0.0,20.0 10.0,0.0"
    assert sparkline_points([]) == ""
    assert sparkline_points([50]) == "0.0,12.0 96.0,12.0"


def test_class_series_is_sampled_at_most_once_a_second(view):
    for i in range(30):
        t = 200 + i * 0.25
        view.apply(state("a", t, engagement=60, seq=i), t)
        view.sample(t)
    assert [round(t - 200, 2) for t, _ in view.series] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert all(v == 60 for _, v in view.series)


def test_segment_bands_follow_class_events(view):
    view.apply(klass(segment={"segment_id": "seg1", "title": "Intro", "start": 10.0}), 10.0)
    view.apply(klass(segment={"segment_id": "seg1", "title": "Intro", "start": 10.0}, emotions=False), 20.0)
    assert view.emotions is False
    view.apply(klass(segment={"segment_id": "seg2", "title": "Exercise", "start": 30.0}), 30.0)
    assert view.segment_bands(45.0) == [(10.0, 30.0, "Intro"), (30.0, 45.0, "Exercise")]
    assert view.current_segment().title == "Exercise"
    view.apply(klass(segment=None), 50.0)  # segment closed without a new one
    assert view.segment_bands(60.0)[-1] == (30.0, 50.0, "Exercise")
    view.apply(klass(session="S2", segment={"segment_id": "seg1", "title": "New", "start": 70.0}), 70.0)
    assert view.segment_bands(80.0) == [(70.0, 80.0, "New")]


def test_a_late_page_fills_in_the_session_so_far_without_touching_live_points():
    view = ClassView("c1")
    view.apply(snapshot([{"student_id": "a", "name": "Ada", "presence": "connected"}],
                        segment={"segment_id": "seg2", "title": "Waves", "start": 150.0}), 200.0)
    view.apply(state("a", 200.0, engagement=90), 200.0)
    view.sample(200.0)
    history = {
        "session_id": "S1",
        "class": [[101.0, 40.0], [102.0, 45.0], [200.0, 10.0]],  # the last one overlaps what the page saw live
        "students": {"a": [[100.5, 40.0, "distracted"], [101.5, 45.0, "focused"], [200.0, 10.0, "away"]],
                     "gone": [[100.5, 70.0, "focused"]]},
        "segments": [{"segment_id": "seg1", "title": "Intro", "start": 100.0, "end": 150.0},
                     {"segment_id": "seg2", "title": "Waves", "start": 150.0, "end": None}],
    }
    assert view.load_history(history) == {"a"}
    assert view.series == [(101.0, 40.0), (102.0, 45.0), (200.0, 90.0)]
    assert view.timeline("a") == [(100.5, 40.0, "distracted"), (101.5, 45.0, "focused"), (200.0, 90.0, "focused")]
    assert view.segment_bands(210.0) == [(100.0, 150.0, "Intro"), (150.0, 210.0, "Waves")]
    assert "gone" not in view.students
    assert view.load_history({**history, "session_id": "S0"}) == set()  # another session's past: ignored


def test_an_ended_session_is_still_the_one_the_report_covers(view):
    assert view.session_id == view.last_session_id == "S1" and not view.ended
    view.apply({**klass(session=None), "ended": True}, 5.0)
    assert view.session_id is None and view.ended and view.last_session_id == "S1"
    view.apply(klass(session="S2"), 9.0)
    assert view.last_session_id == "S2" and not view.ended


def test_an_ended_lesson_keeps_its_bands_and_the_next_lesson_drops_the_students_who_left():
    from smartsession.pages.classview import ClassView

    view = ClassView("c1")
    seg = {"segment_id": "seg1", "title": "Optics", "start": 100.0}
    view.apply({"type": "snapshot", "class_id": "c1", "title": "", "session_id": "S1", "segment": seg,
                "emotions": True, "students": [
                    {"student_id": "old", "name": "Old", "presence": "disconnected", "last_seen": 10.0},
                    {"student_id": "ada", "name": "Ada", "presence": "connected", "last_seen": 101.0}]}, 102.0)
    # The session's history lists who published in it: the student of an earlier lesson leaves the grid.
    view.load_history({"session_id": "S1", "class": [], "segments": [], "students": {"ada": []}})
    assert set(view.students) == {"ada"}
    view.apply({"type": "class", "title": "", "session_id": None, "segment": None, "emotions": True,
                "ended": True}, 200.0)
    assert [s.title for s in view.segments] == ["Optics"]  # the bands stay after "End session"
    view.apply({"type": "presence", "student_id": "ada", "presence": "disconnected", "last_seen": 201.0}, 201.0)
    view.apply({"type": "class", "title": "", "session_id": "S2", "segment": None, "emotions": True}, 300.0)
    assert view.students == {} and view.segments == []


def test_a_page_opened_between_lessons_shows_only_the_students_still_on_their_pages():
    from smartsession.pages.classview import ClassView

    view = ClassView("c1")
    view.apply({"type": "snapshot", "class_id": "c1", "title": "", "session_id": None, "segment": None,
                "emotions": True, "ended": True, "students": [
                    {"student_id": "gone", "name": "Gone", "presence": "disconnected", "last_seen": 10.0},
                    {"student_id": "still", "name": "Still", "presence": "connected", "last_seen": 11.0}]}, 12.0)
    assert set(view.students) == {"still"}
