"""A lesson plan: the outline a teacher prepared, one item per segment, walked through like a teleprompter.

Pure: ``parse_plan`` turns pasted text or a file into items (bounded before any work), ``LessonPlan`` keeps the
position; the teacher page turns each move into a ``start_segment`` command with the item's title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smartsession.schema import MAX_TITLE

#: Items a plan may have, and characters of plan text read at most (a lesson has tens of items, not thousands).
MAX_ITEMS = 100
MAX_PLAN_CHARS = 100_000

_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")


class PlanError(ValueError):
    """Plan text that cannot become a plan; ``str(err)`` says what to change."""


def parse_plan(text: str) -> list[str]:
    """Items from an outline: one per line, or, when the text has Markdown headings, one per heading (the lines
    under a heading are its notes, not items). Bullets and numbering are dropped, whitespace collapsed; markup is
    kept as text (pages escape it). Raises :class:`PlanError` for too much text, too many items or an item longer
    than a segment title may be."""
    if not isinstance(text, str):
        raise PlanError("a plan is text: one item per line")
    if len(text) > MAX_PLAN_CHARS:
        raise PlanError(f"the plan is longer than {MAX_PLAN_CHARS:,} characters: keep one short line per segment")
    lines = text.splitlines()
    headed = [ln for ln in lines if _HEADING.match(ln)]
    source = [_HEADING.sub("", ln) for ln in headed] if headed else [_BULLET.sub("", ln) for ln in lines]
    items = []
    for n, line in enumerate(source, 1):
        item = " ".join("".join(ch for ch in line if ch.isprintable()).split())
        if not item:
            continue
        if len(item) > MAX_TITLE:
            raise PlanError(f"item {len(items) + 1} ({item[:30]}...) is longer than {MAX_TITLE} characters: "
                            "shorten it (it becomes the segment's title)")
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise PlanError(f"the plan has more than {MAX_ITEMS} items: one item per segment of one lesson")
    return items


@dataclass
class LessonPlan:
    """The items and where the lesson is: ``position`` -1 before the first item, else the current item's index."""

    items: list[str] = field(default_factory=list)
    position: int = -1

    @property
    def current(self) -> str | None:
        return self.items[self.position] if 0 <= self.position < len(self.items) else None

    @property
    def next(self) -> str | None:
        return self.items[self.position + 1] if self.position + 1 < len(self.items) else None

    def advance(self) -> str | None:
        """Move to the next item and return its title (the segment to start), or None at the end."""
        if self.position + 1 >= len(self.items):
            return None
        self.position += 1
        return self.items[self.position]

    def back(self) -> str | None:
        """Return to the previous item (a new segment with its title), or None at the first."""
        if self.position <= 0:
            return None
        self.position -= 1
        return self.items[self.position]

    def skip(self) -> str | None:
        """Pass over the next item and start the one after it."""
        if self.position + 2 >= len(self.items):
            return None
        self.position += 2
        return self.items[self.position]

    def add(self, title: str) -> None:
        """Insert an item right after the current one (on the fly), to be the next."""
        [item] = parse_plan(title) or [None]
        if item is None:
            raise PlanError("give the new item a title")
        if len(self.items) >= MAX_ITEMS:
            raise PlanError(f"the plan has {MAX_ITEMS} items already")
        self.items.insert(self.position + 1, item)
