"""Alert rules on synthetic time series: persistence before firing, a reason on every alert, cooldowns."""

from __future__ import annotations

from smartsession.pages.alerts import AlertRules
from smartsession.pages.classview import StudentState


def card(sid, state, presence="connected", label=""):
    """A student as the teacher page holds them (``presence`` as ``ClassView.presence`` shows it)."""
    return StudentState(sid, name=label, presence=presence, state=state)


def run(rules, timeline, engagement=None):
    """Feed ``timeline(t) -> {sid: StudentState}`` once a second for 0..len; collect the alerts."""
    fired = []
    for t, students in timeline:
        fired += rules.check(float(t), students, engagement(t) if engagement else None)
    return fired


def one(state_at, label="Ana", presence="connected"):
    return lambda t: {"s1": card("s1", state_at(t), presence, label)}


def series(fn, seconds):
    return [(t, fn(t)) for t in range(seconds)]


def test_a_short_glance_away_never_alerts():
    rules = AlertRules(persist=30)
    students = one(lambda t: "distracted" if t % 40 < 25 else "focused")
    assert run(rules, series(students, 200)) == []


def test_a_persistent_state_alerts_once_with_its_reason_then_cools_down():
    rules = AlertRules(persist=30, cooldown=300)
    alerts = run(rules, series(one(lambda t: "drowsy"), 400))
    assert [a.t for a in alerts] == [30.0, 330.0]
    first = alerts[0]
    assert first.rule == "student" and first.student_id == "s1"
    assert first.message == "Ana has been drowsy for 30 s"
    assert "drowsy" in first.reason and "30 s" in first.reason


def test_persistence_restarts_when_the_state_changes():
    rules = AlertRules(persist=30)
    # away for 20 s, distracted for 20 s: neither state held 30 s on its own.
    alerts = run(rules, series(one(lambda t: "away" if t < 20 else "distracted"), 40))
    assert alerts == []
    alerts = run(rules, [(t, one(lambda _: "distracted")(t)) for t in range(40, 60)])
    assert [a.t for a in alerts] == [50.0]
    assert "looking elsewhere" in alerts[0].message


def test_paused_or_disconnected_students_do_not_alert():
    rules = AlertRules(persist=10)
    for presence in ("paused", "disconnected"):
        assert run(rules, series(one(lambda t: "away", presence=presence), 60)) == []


def test_class_engagement_must_stay_low():
    rules = AlertRules(class_low=40, class_persist=60, cooldown=120)
    focused = one(lambda t: "focused")
    dips = run(rules, series(focused, 300), engagement=lambda t: 30 if t % 90 < 50 else 70)
    assert dips == []
    low = run(AlertRules(class_low=40, class_persist=60, cooldown=120), series(focused, 200), engagement=lambda t: 25)
    assert [a.t for a in low] == [60.0, 180.0]
    assert low[0].rule == "class_low" and "below 40" in low[0].message and "now 25" in low[0].message


def test_confusion_alert_needs_a_share_of_the_class():
    rules = AlertRules(persist=20, confused_share=0.3)

    def klass(n_confused, n=10):
        return lambda t: {
            f"s{i}": card(f"s{i}", "confused" if i < n_confused else "focused", label=f"S{i}") for i in range(n)
        }

    assert run(rules, series(klass(2), 60)) == []  # 20 % is below the share
    alerts = run(AlertRules(persist=20, confused_share=0.3), series(klass(4), 60))
    assert [a.rule for a in alerts] == ["confused"]
    assert alerts[0].message.startswith("4 of 10 students seem confused")
    assert "40%" in alerts[0].reason


def test_each_student_has_its_own_cooldown():
    rules = AlertRules(persist=10, cooldown=300)
    two = lambda t: {"a": card("a", "away", label="A"), "b": card("b", "away" if t >= 5 else "focused", label="B")}
    alerts = run(rules, series(two, 30))
    assert [(a.student_id, a.t) for a in alerts] == [("a", 10.0), ("b", 15.0)]
