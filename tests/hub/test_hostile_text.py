"""Names and titles are text everyone sees the same way, in any script, and exports never run as formulas.

Invisible characters (bidi overrides, zero-width characters, terminal escapes) are marked where they were, so one
student cannot pose as another; a 120-character name in any script fits its token and connects; CSV cells that a
spreadsheet would evaluate are neutralised as OWASP recommends; a report refuses an absurd time span clearly.
"""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
import time

import pandas as pd
import pytest

from smartsession.cells import safe_cell
from smartsession.hub import auth
from smartsession.hub.standalone import running_hub
from smartsession.hub.store import Store
from smartsession.schema import REMOVED_MARK, SchemaError, clean_title, visible_text

FORMULAS = ("=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(1,2)", "\tTab", "\rCR")
LONG_NAMES = {
    "cyrillic": "Ж" * 120,
    "emoji": "\U0001F600" * 120,
    "cjk-b": "\U00020000" * 120,
    "family": "\U0001F468\u200d\U0001F469\u200d\U0001F467" * 24,  # emoji joined by zero-width joiners
    "arabic": "مرحبا " * 20,
}


def test_invisible_characters_are_marked_where_they_were():
    assert visible_text("Ada") == "Ada"
    assert visible_text("Ada\u202egnirut") == f"Ada{REMOVED_MARK}gnirut"  # right-to-left override
    assert visible_text("A\u200b\u200cda") == f"A{REMOVED_MARK}da"  # zero-width space and non-joiner
    assert visible_text("\x1b[31mred\x1b[0m") == f"{REMOVED_MARK}[31mred{REMOVED_MARK}[0m"  # ANSI escapes
    assert visible_text("\ufeffBOM\u2066x\u2069") == f"{REMOVED_MARK}BOM{REMOVED_MARK}x{REMOVED_MARK}"
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert visible_text(family) == family  # a joiner between emoji is part of one emoji
    assert clean_title("  Ada \u200b Lovelace ", "name") == f"Ada {REMOVED_MARK} Lovelace"
    with pytest.raises(SchemaError):
        clean_title("\u200b" * 1000, "name")


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_neutralised():
    for text in FORMULAS:
        assert safe_cell(text).startswith("'")
    assert safe_cell("Ada") == "Ada" and safe_cell(-2.5) == -2.5 and safe_cell(None) is None
    assert safe_cell("a\x1b[2Jb") == f"a{REMOVED_MARK}[2Jb"


@pytest.mark.parametrize("script", sorted(LONG_NAMES))
def test_a_120_character_name_in_any_script_joins_and_publishes(tmp_path, kit, script):
    name = LONG_NAMES[script]
    assert len(name) <= 120

    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Scripts")
            ws, joined, welcome = await kit.student(url, info, name)
            assert len(joined["token"]) <= auth.MAX_TOKEN
            assert welcome["name"] == clean_title(name, "name")
            await ws.send(kit.state(joined, 0))
            ack = await kit.until(ws, lambda m: m.get("type") == "ack")
            assert ack["seq"] == 0
            await ws.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_student_cannot_pose_as_another_on_the_teachers_grid(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Lookalikes")
            names = ["Ada", "A\u200bda", "Ada\u202e", "Ad\u200da"]
            sockets = [await kit.student(url, info, n) for n in names]
            ws, snap = await kit.teacher(url, info)
            shown = sorted(s["name"] for s in snap["students"])
            assert shown[0] == "Ada" and len(set(shown)) == len(names), shown
            assert all(REMOVED_MARK in n for n in shown[1:])
            for s, *_ in sockets:
                await s.close()
            await ws.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def _lesson(tmp_path, kit, names, segment_title):
    """A real hub lesson: students with ``names`` publish for a while in a segment called ``segment_title``."""

    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Exports")
            students = [await kit.student(url, info, n) for n in names]
            ws, _ = await kit.teacher(url, info)
            await ws.send(json.dumps({"type": "command", "v": 1, "command": "start_segment", "title": segment_title,
                                      "id": 1}))
            await kit.until(ws, lambda m: m.get("type") == "result")
            now = time.time()
            for seq in range(6):
                for i, (s, joined, _) in enumerate(students):
                    await s.send(kit.state(joined, seq, t=now - 60 + 10 * seq, engagement=50.0 + 5 * i))
            for s, *_ in students:
                await kit.until(s, lambda m: m.get("type") == "ack" and m.get("seq") == 5)
                await s.close()
            await ws.close()
            return info["class_id"]

    asyncio.run(asyncio.wait_for(main(), 60))


def _cells(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_report_and_export_csvs_carry_no_formula_or_escape(tmp_path, kit):
    names = ["=cmd|' /C calc'!A0", "+Bob", "@Carol", "-Dan\x1b[31m"]
    _lesson(tmp_path / "data", kit, names, "=HYPERLINK(\"http://evil\",\"seg\")")
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "smartsession", "report", "latest", "--data-dir", tmp_path / "data",
                          "--names", "--out", out, "--format", "csv", "--min-group", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    store = Store(tmp_path / "data")
    try:
        session_id = store.sessions()["session_id"].iloc[-1]
        export = store.export_session(session_id, tmp_path / "states.csv")
    finally:
        store.close()
    files = [*out.glob("*.csv"), export]
    cells = [c for path in files for c in _cells(path)]
    risky = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not _is_number(c)]
    assert risky == [], risky
    assert not any("\x1b" in c for c in cells)
    text = "".join(path.read_text(encoding="utf-8") for path in files)
    assert "'=cmd" in text and "'+Bob" in text and "'=HYPERLINK" in text


def test_a_report_of_an_absurd_time_span_is_refused_clearly(tmp_path):
    now = time.time()
    rows = [{"student_id": "s1", "t": t, "state": "focused", "engagement": 70.0, "segment": None, "paused": False}
            for t in (now, now - 3000 * 365.25 * 86400)]
    path = tmp_path / "hostile.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "smartsession", "report", path, "--out", tmp_path / "out"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "more than a report covers (24 h)" in run.stderr and "Traceback" not in run.stderr
    assert time.monotonic() - started < 60
