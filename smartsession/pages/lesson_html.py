"""What the teacher page shows of the lesson around the measure, as pure functions: the plan's current and next
item, a check-in's live tally, the lesson history and its chart. Every text a person typed is escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any


def plan_now_html(current: str | None, upcoming: str | None, position: int, total: int) -> str:
    """The current and the next item, large enough to read while teaching."""
    if not total:
        return ("<div class='ss-plan-now'><div class='ss-muted'>No lesson plan: paste an outline below "
                "(one item per line, or Markdown headings) and save it.</div></div>")
    now = escape(current) if current else "<span class='ss-muted'>Not started: press Next (or N) for the first item</span>"
    nxt = escape(upcoming) if upcoming else "<span class='ss-muted'>end of the plan</span>"
    step = f"item {position + 1} of {total}" if current else f"{total} items"
    return (
        "<div class='ss-plan-now' aria-live='polite'>"
        f"<div class='ss-muted'>Now ({step})</div><div class='ss-plan-current'>{now}</div>"
        f"<div class='ss-muted'>Next</div><div class='ss-plan-next'>{nxt}</div></div>"
    )


def tally_html(checkin: dict[str, Any] | None, counts: list[int], answered: int, present: int,
               open_: bool) -> str:
    """A check-in's question, answers per option (bars and numbers) and the response rate."""
    if checkin is None:
        return "<div class='ss-tally ss-muted'>No check-in yet.</div>"
    options = checkin.get("options", [])
    top = max([1, *counts])
    rows = []
    for option, n in zip(options, counts):
        width = round(100 * n / top)
        rows.append(
            f"<tr><th scope='row'>{escape(str(option))}</th><td>{n}</td>"
            f"<td><span class='ss-tally-bar' style='width:{width}px'></span></td></tr>")
    rate = f"{answered} of {present} present answered ({100 * answered / present:.0f}%)" if present else \
        f"{answered} answered"
    state = "open" if open_ else "closed"
    return (
        f"<div class='ss-tally'><b>{escape(str(checkin.get('question', '')))}</b> <span class='ss-muted'>"
        f"({state})</span><table><caption class='ss-muted'>{rate}</caption>{''.join(rows)}</table></div>"
    )


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def history_html(lessons: list[dict[str, Any]]) -> str:
    """The past lessons as a table, newest first (each row has a button beside it, added by the page)."""
    if not lessons:
        return "<div class='ss-muted'>No lessons recorded for this class yet.</div>"
    rows = []
    for s in reversed(lessons):
        drop = s.get("drop")
        drop_text = "-" if not drop else (
            f"-{drop['points']:.0f} at {datetime.fromtimestamp(drop['at']).strftime('%H:%M')}"
            + (f" ({escape(drop['segment'])})" if drop.get("segment") else ""))
        rate = "-" if s.get("response_rate") is None else f"{100 * s['response_rate']:.0f}%"
        engagement = "-" if s.get("engagement") is None else f"{s['engagement']:.0f}"
        rows.append(
            f"<tr><td>{_when(s['started'])}</td><td>{escape(s.get('title') or '')}</td><td>{s['minutes']:.0f} min</td>"
            f"<td>{s['students']}</td><td>{engagement}</td><td>{drop_text}</td><td>{rate}</td></tr>")
    return (
        "<table class='ss-history'><caption>Past lessons, newest first</caption><thead><tr><th>Date</th>"
        "<th>Title</th><th>Duration</th><th>Students</th><th>Mean engagement</th><th>Biggest drop</th>"
        "<th>Check-in answers</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def history_chart_svg(lessons: list[dict[str, Any]], width: int = 420, height: int = 90) -> str:
    """Mean engagement lesson by lesson, a small line with points (and its words for screen readers)."""
    points = [(s["started"], s["engagement"]) for s in lessons if s.get("engagement") is not None]
    if not points:
        return ""
    n = len(points)
    xy = [(10 + (width - 20) * (i / max(1, n - 1)), height - 10 - (height - 20) * e / 100)
          for i, (_, e) in enumerate(points)]
    words = "; ".join(f"{_when(t)}: {e:.0f}" for t, e in points)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#1565c0'/>" for x, y in xy)
    return (
        f"<svg role='img' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>"
        f"<title>Mean engagement by lesson: {escape(words)}</title>"
        f"<polyline points='{line}' fill='none' stroke='#1565c0' stroke-width='2'/>{dots}</svg>"
    )


LESSON_STYLE = """<style>
.ss-plan-now { padding: 8px 12px; border-left: 4px solid #1565c0; background: #f5f9ff; margin: 6px 0; }
.ss-plan-current { font-size: 1.8em; font-weight: 600; }
.ss-plan-next { font-size: 1.3em; }
.ss-tally table { border-collapse: collapse; } .ss-tally th, .ss-tally td { padding: 2px 8px; text-align: left; }
.ss-tally-bar { display: inline-block; height: 10px; background: #4f7cac; }
.ss-history { border-collapse: collapse; } .ss-history th, .ss-history td { padding: 3px 8px; text-align: left; }
.ss-history tbody tr:nth-child(odd) { background: #f5f7f8; }
/* The accordion's closed headers are grey on grey (4.45:1), just under WCAG AA's 4.5:1. */
.ss-lesson-tabs .jupyter-widget-Collapse-header, .ss-lesson-tabs .jupyter-widget-Collapse-header span { color: #333; }
</style>"""
