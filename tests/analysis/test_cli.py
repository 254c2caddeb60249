"""``smartsession analyze`` end to end in a subprocess: JSON lines and CSV, --fps, folders, bad files among good."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from smartsession.dataset.media import pyfeat_file
from smartsession.schema import ATTENTION_STATES
from smartsession.vision.frames import video_info


def analyze(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartsession", "analyze", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Good photos in a nested folder plus one of each kind of bad file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "class" / "row1").mkdir(parents=True)
    for name in ("0-f15-hao-ph.jpg", "45-m7-di-ph.jpg"):
        shutil.copy(pyfeat_file(name), root / "class" / "row1" / name)
    shutil.copy(pyfeat_file("free-mountain-vector-01.jpg"), root / "class" / "mountain.jpg")
    data = pyfeat_file("single_face.jpg").read_bytes()
    (root / "class" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (root / "class" / "empty.jpg").write_bytes(b"")
    (root / "class" / "notes.jpg").write_text("not a photo\n")
    (root / "class" / "README.txt").write_text("ignored: not an image suffix\n")
    return root


@pytest.mark.slow
def test_jsonl_on_images_and_a_folder_with_bad_files(folder):
    proc = analyze(folder, pyfeat_file("single_face.jpg"))
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in records}
    assert set(by_name) == {"0-f15-hao-ph.jpg", "45-m7-di-ph.jpg", "mountain.jpg", "single_face.jpg"}
    assert {name: r["state"] for name, r in by_name.items()} == {
        "0-f15-hao-ph.jpg": "happy", "45-m7-di-ph.jpg": "distracted", "mountain.jpg": "away", "single_face.jpg": "happy"}
    for r in records:
        assert 0 <= r["engagement"] <= 100 and r["ms"] > 0 and r["frame"] == 0
        assert {"source", "frame", "media_time", "face", "faces", "confidence", "yaw", "gaze_x", "ear", "mar"} <= set(r)
    assert by_name["mountain.jpg"]["state"] == "away" and by_name["mountain.jpg"]["yaw"] is None
    assert by_name["45-m7-di-ph.jpg"]["state"] == "distracted"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, proc.stderr
    assert any("cut.jpg" in e and "truncated" in e for e in errors)
    assert any("empty.jpg" in e and "zero-byte" in e for e in errors)
    assert any("notes.jpg" in e and "not an image" in e for e in errors)
    assert "Traceback" not in proc.stderr
    assert all(line.startswith("error:") for line in proc.stderr.splitlines() if line.strip()), proc.stderr


@pytest.mark.slow
def test_csv_video_every_frame_and_with_fps(tmp_path):
    video = pyfeat_file("single_face.mp4")
    native, count = video_info(video)
    every = analyze(video, "--format", "csv")
    assert every.returncode == 0, every.stderr
    rows = list(csv.DictReader(io.StringIO(every.stdout)))
    assert len(rows) == count and [int(r["frame"]) for r in rows] == list(range(count))
    assert all(r["face"] == "True" for r in rows) and not {r["state"] for r in rows} & {"distracted", "drowsy", "away"}
    out = tmp_path / "sampled.csv"
    sampled = analyze(video, "--format", "csv", "--fps", "5", "-o", out)
    assert sampled.returncode == 0 and sampled.stdout == ""
    rows = list(csv.DictReader(out.open()))
    assert abs(len(rows) - count / native * 5) <= 1.5
    assert float(rows[1]["media_time"]) - float(rows[0]["media_time"]) == pytest.approx(0.2, abs=1 / native + 1e-3)


@pytest.mark.slow
def test_no_emotions_and_missing_paths(tmp_path):
    proc = analyze(pyfeat_file("WolfgangLanger_Pexels.mp4"), tmp_path / "nothing.mp4", "99", "--fps", "4",
                   "--no-emotions")
    assert proc.returncode == 1
    states = {json.loads(line)["state"] for line in proc.stdout.splitlines()}
    assert states and states <= set(ATTENTION_STATES)
    assert "nothing.mp4: no such file" in proc.stderr
    assert "camera 99: cannot open it" in proc.stderr


@pytest.mark.slow
def test_bad_fps_and_help():
    assert analyze(pyfeat_file("single_face.jpg"), "--fps", "0").returncode == 2
    help_text = analyze("--help").stdout
    for option in ("--format", "--fps", "--no-emotions", "-o"):
        assert option in help_text


def test_notes_the_face_model_runtime_writes_on_stderr_stay_out_of_the_users_errors(folder, capfd, monkeypatch):
    """MediaPipe's runtime now and then logs a note of its own on fd 2 while it analyses ("input tensor memory is
    not aligned ... copying data"); the command's stderr keeps only its errors. Real analysis of real photos, each
    call also writing such a note the way the native runtime does (to fd 2, beneath Python)."""
    import os

    from smartsession.analysis.analyzer import Analyzer
    from smartsession.cli import main

    real = Analyzer.process

    def noisy(self, *args, **kwargs):
        os.write(2, b"W0000 00:00:0 1 inference_runner_litert.cc:1418] Input tensor memory is not aligned\n")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Analyzer, "process", noisy)
    assert main(["analyze", str(folder / "class" / "row1"), str(folder / "class" / "notes.jpg")]) == 1
    out, err = capfd.readouterr()
    assert len(out.strip().splitlines()) == 2  # both photos analysed
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("error:")] and "notes.jpg" in err, err
    assert "W0000" not in err
