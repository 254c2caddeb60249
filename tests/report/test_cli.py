"""``smartsession report`` as a user runs it: files written from the store, clear errors otherwise."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest


def report(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "smartsession", "report", *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )


def test_latest_session_from_the_data_dir_with_all_formats(lessons, tmp_path):
    data_dir = lessons["drop"].data_dir
    out = tmp_path / "out"
    run = report(lessons["drop"].session_id, "--data-dir", data_dir, "--out", out, "--format", "html,csv,parquet")
    assert run.returncode == 0, run.stderr
    assert "15 students" in run.stdout and "4 segments" in run.stdout
    segments = pd.read_parquet(out / "segments.parquet")
    assert segments["title"].iloc[0] == "Long derivation"
    moments = pd.read_csv(out / "moments.csv")
    assert "Long derivation" in set(moments.loc[moments["kind"] == "drop", "segment_title"])
    html = (out / "report.html").read_text()
    assert "cdn." not in html.split("<script type='text/javascript'>")[0]  # no CDN before the inlined plotly
    assert "https://" not in html.replace(html[html.index("<script type='text/javascript'>"):html.index("</script>")], "")


def test_an_export_file_is_a_session_too(lessons, store, tmp_path):
    path = store.export_session(lessons["late_early"].session_id, tmp_path / "lesson.parquet", format="parquet")
    run = report(path, "--out", tmp_path / "out", "--format", "csv")
    assert run.returncode == 0, run.stderr
    assert "6 students" in run.stdout
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["no-such-session"], 1, "no session 'no-such-session' in the store; known sessions:"),
        (["latest", "--format", "pdf"], 2, "--format takes html, csv, parquet"),
        (["latest", "--bin", "5", "--window", "5"], 1, "window_s at least two bins"),
    ],
)
def test_mistakes_get_a_clear_message(lessons, tmp_path, args, code, message):
    run = report(*args, "--data-dir", lessons["drop"].data_dir, "--out", tmp_path / "out")
    assert run.returncode == code
    assert message in run.stderr


def test_a_directory_without_a_store(tmp_path):
    run = report("latest", "--data-dir", tmp_path)
    assert run.returncode == 1
    assert "no session store at" in run.stderr and "--data-dir" in run.stderr
