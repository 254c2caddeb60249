"""The lesson plan without a page: parsing outlines, hostile text refused, moving through the items."""

from __future__ import annotations

import pytest

from smartsession.lesson.plan import MAX_ITEMS, LessonPlan, PlanError, parse_plan


def test_lines_bullets_and_markdown_headings_become_items():
    assert parse_plan("Intro\n\n- Optics\n2. Lenses  and  mirrors\n* Quiz\n") == [
        "Intro", "Optics", "Lenses and mirrors", "Quiz"]
    md = "# Intro\nsay hello\n## Optics\n- a note, not an item\n### <b>Quiz</b>\n"
    assert parse_plan(md) == ["Intro", "Optics", "<b>Quiz</b>"]  # markup stays text; pages escape it


def test_hostile_plans_are_refused_with_what_to_do():
    with pytest.raises(PlanError, match=f"more than {MAX_ITEMS} items"):
        parse_plan("\n".join(f"item {i}" for i in range(10_000)))
    with pytest.raises(PlanError, match="longer than 100,000 characters"):
        parse_plan("x" * 1_000_000)
    with pytest.raises(PlanError, match="longer than 120 characters"):
        parse_plan("ok\n" + "y" * 5000)
    assert parse_plan("a\x00b\x1b[31m") == ["ab[31m"]


def test_advance_back_skip_and_add_on_the_fly():
    plan = LessonPlan(parse_plan("A\nB\nC\nD\nE"))
    assert (plan.current, plan.next) == (None, "A")
    assert plan.advance() == "A" and plan.advance() == "B"
    assert plan.back() == "A" and plan.back() is None
    assert plan.skip() == "C"
    plan.add("Questions")
    assert (plan.current, plan.next) == ("C", "Questions")
    assert [plan.advance(), plan.advance(), plan.advance(), plan.advance()] == ["Questions", "D", "E", None]
    with pytest.raises(PlanError):
        plan.add("   ")
