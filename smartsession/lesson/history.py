"""The lessons before this one, one line each: date, duration, students, engagement, the biggest drop, answers.

``summarise`` is pure: it takes what ``Store.lesson_rows`` aggregated in the database (no state rows reach
Python) and gives one dict per session, oldest first, for the teacher page's history and its chart.
"""

from __future__ import annotations

from typing import Any


def summarise(rows: dict[str, list[tuple]]) -> list[dict[str, Any]]:
    minutes: dict[str, list[tuple[int, float]]] = {}
    for session_id, minute, mean in rows["minutes"]:
        minutes.setdefault(session_id, []).append((int(minute), float(mean)))
    segments: dict[str, list[tuple]] = {}
    for session_id, title, start, end in rows["segments"]:
        segments.setdefault(session_id, []).append((title, start, end))
    checkins = dict(rows["checkins"])
    answers = dict(rows["answers"])
    out = []
    for session_id, title, started, ended, last, students, mean in rows["sessions"]:
        end = ended if ended is not None else last
        drop = biggest_drop(minutes.get(session_id, []))
        asked = int(checkins.get(session_id, 0))
        possible = asked * int(students or 0)
        out.append({
            "session_id": session_id,
            "title": title,
            "started": started,
            "minutes": round(max(0.0, (end or started) - started) / 60, 1),
            "students": int(students or 0),
            "engagement": None if mean is None else round(float(mean), 1),
            "drop": None if drop is None else {
                "points": round(drop[0], 1), "at": drop[1],
                "segment": segment_at(segments.get(session_id, []), drop[1]),
            },
            "checkins": asked,
            "response_rate": None if not possible else round(int(answers.get(session_id, 0)) / possible, 3),
        })
    return out


def biggest_drop(minutes: list[tuple[int, float]]) -> tuple[float, float] | None:
    """The largest fall of the class mean from one minute to the next: (points, unix time of the lower minute)."""
    best = None
    for (m0, e0), (m1, e1) in zip(minutes, minutes[1:]):
        if m1 - m0 == 1 and e0 - e1 > 0 and (best is None or e0 - e1 > best[0]):
            best = (e0 - e1, m1 * 60.0)
    return best


def segment_at(segments: list[tuple], t: float) -> str | None:
    title = None
    for seg_title, start, end in segments:
        if start <= t + 60 and (end is None or t < end):
            title = seg_title
    return title
