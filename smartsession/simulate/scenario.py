"""Scenarios for the mock classroom: the built-in ones, the JSON file format, and its checks.

``load_scenario`` turns a name, a file or a dict into a checked scenario or raises ``ScenarioError``
naming the field and what to write there (docs/REPORT.md describes the format).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from smartsession.schema import CHECKIN_PRESETS, STATES

#: Built-in scenarios. Times (``at``, ``until``, ``join``, ``leave``) are fractions of the duration.
SCENARIOS: dict[str, dict[str, Any]] = {
    "lecture": {
        "segments": [
            {"title": "Introduction", "at": 0.0},
            {"title": "Worked example", "at": 0.25},
            {"title": "New theory", "at": 0.5},
            {"title": "Exercises", "at": 0.75},
        ],
    },
    "drop": {
        "segments": [
            {"title": "Introduction", "at": 0.0},
            {"title": "Worked example", "at": 0.25},
            {"title": "Long derivation", "at": 0.5},
            {"title": "Exercises", "at": 0.75},
        ],
        "drops": [{"at": 0.55, "until": 0.75, "share": 0.8, "mix": {"distracted": 3, "drowsy": 2, "away": 1}}],
        "attendance": [],
    },
    "late-early": {
        "segments": [{"title": "First half", "at": 0.0}, {"title": "Second half", "at": 0.5}],
        "attendance": [{"share": 0.3, "join": 0.3}, {"share": 0.2, "leave": 0.6}],
    },
    # The drop scenario with check-ins: "Where was your mind?" before, in and after the drop, answered by most
    # students, in agreement with their simulated attention 80% of the time; answers usable for research.
    "checkins": {
        "segments": [
            {"title": "Introduction", "at": 0.0},
            {"title": "Worked example", "at": 0.25},
            {"title": "Long derivation", "at": 0.5},
            {"title": "Exercises", "at": 0.75},
        ],
        "drops": [{"at": 0.55, "until": 0.75, "share": 0.8, "mix": {"distracted": 3, "drowsy": 2, "away": 1}}],
        "attendance": [],
        "checkins": [
            {"at": 0.2, "kind": "mind"}, {"at": 0.45, "kind": "sense"}, {"at": 0.68, "kind": "mind"},
            {"at": 0.9, "kind": "mind"},
        ],
        "answers": {"share": 0.9, "agree": 0.8, "research": True},
    },
    "break": {
        "segments": [
            {"title": "Lecture", "at": 0.0},
            {"title": "Break", "at": 0.4},
            {"title": "Discussion", "at": 0.6},
        ],
        "silent": [{"at": 0.4, "until": 0.6}],
        "attendance": [],
    },
}


class ScenarioError(ValueError):
    """A scenario that does not follow the format; the message names the field and what to write."""


def load_scenario(spec: str | dict | None) -> dict[str, Any]:
    """A scenario from a built-in name, a JSON file path or a dict; checked and with defaults filled in."""
    if spec is None:
        spec = "lecture"
    if isinstance(spec, str):
        if spec in SCENARIOS:
            raw = dict(SCENARIOS[spec], name=spec)
        elif Path(spec).is_file():
            try:
                raw = json.loads(Path(spec).read_text())
            except json.JSONDecodeError as exc:
                raise ScenarioError(f"{spec}: not valid JSON ({exc})") from None
            if not isinstance(raw, dict):
                raise ScenarioError(f"{spec}: a scenario is a JSON object, e.g. {{\"segments\": [...]}}")
            raw.setdefault("name", Path(spec).stem)
        else:
            raise ScenarioError(
                f"unknown scenario {spec!r}: use one of {', '.join(SCENARIOS)} or the path of a JSON file"
            )
    elif isinstance(spec, dict):
        raw = dict(spec)
    else:
        raise ScenarioError(f"a scenario is a name, a JSON file path or a dict, not {type(spec).__name__}")
    return _check(raw)


def _frac(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ScenarioError(f"{where} must be a fraction of the duration between 0 and 1, got {value!r}")
    return float(value)


def _entries(raw: dict[str, Any], key: str, example: str) -> list[dict[str, Any]]:
    """The list ``raw[key]`` (empty when absent), every entry an object, or a ScenarioError naming the entry."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScenarioError(f"{key} must be a list of objects, e.g. [{example}]")
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise ScenarioError(f"{key}[{i}] must be an object, e.g. {example}; got {entry!r}")
    return value


def _mix(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise ScenarioError(f"{where} must be an object of state weights, e.g. {{\"distracted\": 2, \"drowsy\": 1}}")
    for k, v in value.items():
        if k not in STATES:
            raise ScenarioError(f"{where}: unknown state {k!r}; states are {', '.join(STATES)}")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < math.inf:
            raise ScenarioError(f"{where}.{k} must be a weight >= 0")
    if sum(value.values()) <= 0:
        raise ScenarioError(f"{where}: at least one weight must be > 0")
    return {k: float(v) for k, v in value.items()}


def _check(raw: dict[str, Any]) -> dict[str, Any]:
    known = {"name", "duration_s", "segments", "drops", "attendance", "silent", "pauses", "checkins", "answers"}
    extra = set(raw) - known
    if extra:
        raise ScenarioError(f"unknown scenario field(s) {', '.join(sorted(extra))}; known: {', '.join(sorted(known))}")
    name = raw.get("name", "scenario")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError("name must be a non-empty string")
    out: dict[str, Any] = {"name": name}
    if raw.get("duration_s") is not None:
        d = raw["duration_s"]
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 < d < math.inf:
            raise ScenarioError("duration_s must be a number of seconds > 0")
        out["duration_s"] = float(d)
    segments = []
    for i, seg in enumerate(_entries(raw, "segments", '{"title": "Introduction", "at": 0}')):
        where = f"segments[{i}]"
        if not isinstance(seg.get("title"), str) or not seg["title"].strip():
            raise ScenarioError(f"{where} needs a title, e.g. {{\"title\": \"Introduction\", \"at\": 0}}")
        item = {"title": seg["title"].strip(), "at": _frac(seg.get("at", 0.0), f"{where}.at")}
        if "mix" in seg:
            item["mix"] = _mix(seg["mix"], f"{where}.mix")
        segments.append(item)
    out["segments"] = sorted(segments, key=lambda s: s["at"])
    out["drops"] = []
    for i, drop in enumerate(_entries(raw, "drops", '{"at": 0.5, "until": 0.7, "share": 0.8}')):
        where = f"drops[{i}]"
        at, until = _frac(drop.get("at"), f"{where}.at"), _frac(drop.get("until", 1.0), f"{where}.until")
        if until <= at:
            raise ScenarioError(f"{where}: until must come after at")
        out["drops"].append(
            {
                "at": at,
                "until": until,
                "share": _frac(drop.get("share", 1.0), f"{where}.share"),
                "mix": _mix(drop.get("mix", {"distracted": 2, "drowsy": 1}), f"{where}.mix"),
            }
        )
    out["attendance"] = None if "attendance" not in raw else []
    for i, rule in enumerate(_entries(raw, "attendance", '{"share": 0.2, "join": 0.3}')):
        where = f"attendance[{i}]"
        if not ({"join", "leave"} & set(rule)):
            raise ScenarioError(f"{where} needs join and/or leave, e.g. {{\"share\": 0.2, \"join\": 0.3}}")
        item = {"share": _frac(rule.get("share", 1.0), f"{where}.share")}
        for key in ("join", "leave"):
            if key in rule:
                item[key] = _frac(rule[key], f"{where}.{key}")
        out["attendance"].append(item)
    out["silent"] = []
    for i, gap in enumerate(_entries(raw, "silent", '{"at": 0.4, "until": 0.6}')):
        at, until = _frac(gap.get("at"), f"silent[{i}].at"), _frac(gap.get("until"), f"silent[{i}].until")
        if until <= at:
            raise ScenarioError(f"silent[{i}]: until must come after at")
        out["silent"].append({"at": at, "until": until})
    out["pauses"] = []
    for i, pause in enumerate(_entries(raw, "pauses", '{"at": 0.3, "until": 0.4, "share": 0.2}')):
        where = f"pauses[{i}]"
        at, until = _frac(pause.get("at"), f"{where}.at"), _frac(pause.get("until"), f"{where}.until")
        if until <= at:
            raise ScenarioError(f"{where}: until must come after at")
        out["pauses"].append({"at": at, "until": until, "share": _frac(pause.get("share", 1.0), f"{where}.share")})
    out["checkins"] = []
    for i, ck in enumerate(_entries(raw, "checkins", '{"at": 0.5, "kind": "mind"}')):
        where = f"checkins[{i}]"
        if ck.get("kind", "mind") not in CHECKIN_PRESETS:
            raise ScenarioError(f"{where}.kind must be one of {', '.join(CHECKIN_PRESETS)}")
        out["checkins"].append({"at": _frac(ck.get("at"), f"{where}.at"), "kind": ck.get("kind", "mind")})
    out["checkins"].sort(key=lambda c: c["at"])
    answers = raw.get("answers") or {}
    if not isinstance(answers, dict) or set(answers) - {"share", "agree", "research"}:
        raise ScenarioError('answers must be an object like {"share": 0.9, "agree": 0.8, "research": false}')
    if not isinstance(answers.get("research", False), bool):
        raise ScenarioError("answers.research must be true or false")
    out["answers"] = {"share": _frac(answers.get("share", 0.9), "answers.share"),
                      "agree": _frac(answers.get("agree", 0.8), "answers.agree"),
                      "research": answers.get("research", False)}
    return out
