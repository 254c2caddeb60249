"""What a screen reader is told: states once they settle, never faster than the gap; alerts together; charts in words."""

from __future__ import annotations

import time

from smartsession.pages.alerts import Alert
from smartsession.pages.announce import Announcer
from smartsession.pages.student_html import announcement, feedback_html, teacher_view_html
from smartsession.pages.teacher_html import alerts_announcement, chart_text, counts_html, gauge_html
from smartsession.schema import STATES, StateMessage


def run(announcer: Announcer, texts: list[tuple[float, str]]) -> list[tuple[float, str]]:
    said = []
    for t, text in texts:
        announcer.offer(text, t)
        out = announcer.poll(t)
        if out:
            said.append((t, out))
    return said


def test_a_flickering_state_is_not_read_out():
    # Ten frames a second alternating between two states for 20 s: nothing ever holds for 2 s.
    frames = [(i / 10, "focused" if i % 2 else "distracted") for i in range(200)]
    assert run(Announcer(settle=2.0, min_gap=5.0), frames) == []


def test_a_settled_state_is_read_once_and_changes_wait_for_the_gap():
    frames = [(i / 10, "focused") for i in range(50)] + [(5 + i / 10, "drowsy") for i in range(100)]
    said = run(Announcer(settle=2.0, min_gap=5.0), frames)
    assert said[0] == (2.0, "focused")
    # "drowsy" settles at 7.0 s and the gap after 2.0 s ends at 7.0 s; it is said once, not at every frame.
    assert [text for _, text in said] == ["focused", "drowsy"]
    assert said[1][0] >= 7.0


def test_own_actions_are_confirmed_at_once_and_reset_the_gap():
    a = Announcer(settle=2.0, min_gap=5.0)
    assert a.say_now("Paused", 10.0) == "Paused"
    a.offer("focused", 10.5)
    assert a.poll(13.0) is None  # settled, but within the gap after "Paused"
    assert a.poll(15.0) == "focused"


def test_alerts_are_read_together_with_their_time():
    t = time.mktime((2026, 1, 5, 10, 42, 0, 0, 0, -1))
    alerts = [Alert(f"k{i}", "student", t, f"Student {i} has been away for 30 s", "why") for i in range(5)]
    one = alerts_announcement(alerts[:1])
    assert one == "New alert at 10:42: Student 0 has been away for 30 s"
    many = alerts_announcement(alerts)
    assert many.startswith("5 new alerts at 10:42: Student 2") and "(2 more in the list)" in many


def test_student_feedback_says_the_state_in_words_and_symbol_with_readable_text():
    obs = type("Obs", (), dict(state="distracted", engagement=41.0, engagement_components={"gaze": 0.4}, face=True))
    html = feedback_html(obs)
    assert ">▼</span> distracted</span>" in html and "color:#000000" in html
    assert announcement("distracted") == "distracted: You seem to be looking away."
    msg = StateMessage(class_id="c", student_id="s", seq=1, t=time.time(), state="uncertain", engagement=0,
                       confidence=0, paused=True)
    assert "Ⅱ</span> paused" in teacher_view_html(msg)


def test_gauge_and_counts_carry_words_and_symbols():
    assert 'aria-label="Class engagement: 62 out of 100"' in gauge_html(61.6)
    assert 'aria-label="Class engagement: no students measured yet"' in gauge_html(None)
    counts = counts_html({s: 1 for s in STATES}, emotions=False)
    assert "happy" not in counts and 'aria-hidden="true"' in counts and "✕</span>away <b>1</b>" in counts


def test_the_class_chart_in_words_has_its_numbers():
    t0 = time.mktime((2026, 1, 5, 10, 0, 0, 0, 0, -1))
    series = [(t0 + 60 * i, v) for i, v in enumerate([70, 64, 40, 52])]
    text = chart_text(series, [(t0, t0 + 120, "Intro"), (t0 + 120, t0 + 180, "Group work")], t0 + 180)
    assert "now 52 out of 100; over the last 3 min between 40 and 70, mean 56." in text
    assert "Intro from 10:00 to 10:02" in text and "Group work from 10:02 (running)" in text
    assert chart_text([], [], t0) == "Class engagement chart: no measurements yet."


def test_a_card_carries_the_symbol_of_its_state_or_presence():
    from smartsession.pages.classview import ClassView

    view = ClassView("c1", stale_after=10)
    view.apply({"type": "snapshot", "class_id": "c1", "session_id": "S1", "students": []}, 0.0)
    event = StateMessage("c1", "a", 0, 0.95, "drowsy", 30.0, 0.9, {}).to_dict()
    view.apply({**event, "type": "state", "received": 1.0}, 1.0)
    assert view.card("a", 2.0)["symbol"] == "■"
    assert view.card("a", 60.0)["symbol"] == "○"  # silent for a minute: shown as disconnected
