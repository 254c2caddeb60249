"""benchmarks/capacity.py end to end at a tiny N: a real server, real kernels fed real-face JPEGs and packed faces by
the page client, one real Chromium student, and the BENCH line it ends with; and stopped by SIGTERM mid-run, it
leaves no server or kernel behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.browser
def test_capacity_benchmark_runs_quick_and_leaves_nothing_behind():
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from conftest import chromium_or_skip

    chromium_or_skip()
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "capacity.py"), "--quick", "--max-students", "2",
         "--seconds", "5"],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("BENCH "), run.stdout[-3000:]
    bench = json.loads(last[len("BENCH "):])
    assert {"browser_mode_students", "server_mode_students", "feedback_p90_ms", "teacher_p95_ms",
            "kernel_messages_per_student_s", "cpu_ms_per_student_s", "kernel_uss_mb",
            "parity_state_agreement"} <= bench.keys()
    assert 0.0 <= bench["parity_state_agreement"] <= 1.0 and bench["batch_state_agreement"] == 1.0
    # Both transports measured side by side on the same students: batches cost fewer kernel messages.
    browser = bench["browser_mode"]
    if browser["students"]:
        batched, per_frame = browser["batched"], browser["per_frame"]
        assert batched["kernel_messages_per_student_s"] < per_frame["kernel_messages_per_student_s"], browser
    # Jupyter's own floor, measured beside: echo kernels answered every message, at a cost and a ceiling.
    floor = bench["jupyter_floor"]
    assert floor["messages"] > 0 and floor["server_ms_per_message"] > 0 and floor["kernel_ms_per_message"] > 0
    assert floor["ceiling_students"] > 0
    # Two students (one simulated, one Chromium) on one real server: a figure, not a target.
    assert bench["server_mode_students"] in (0, 2)
    assert bench["browser_mode_students"] in (0, 2)
    leftovers = subprocess.run(["pgrep", "-f", "smartsession-(capacity|floor)-"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"processes of the benchmark still running: {leftovers}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purpose.
    return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower() if Path(f"/proc/{pid}").exists() else False


@pytest.mark.slow
@pytest.mark.browser
def test_sigterm_mid_run_stops_every_server_and_kernel_it_started():
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from conftest import chromium_or_skip

    from testkit import memory

    chromium_or_skip()
    run = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "capacity.py"), "--quick", "--mode", "browser",
         "--max-students", "2", "--seconds", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    lines, serve_pid, kernels = [], None, {}
    try:
        deadline = time.monotonic() + 900
        for line in run.stdout:
            lines.append(line)
            if line.strip().startswith("serve pid "):
                serve_pid = int(line.split()[-1])
            # Once the server has kernels (its pool is warm), the run is in the middle of its work.
            if serve_pid is not None and "pool kernels warm" in line:
                kernels = memory.kernels_of(serve_pid)
                break
            assert time.monotonic() < deadline, "".join(lines[-40:])
        assert serve_pid is not None and kernels, "".join(lines[-40:])
        run.send_signal(signal.SIGTERM)
        rest, _ = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    out = "".join(lines) + rest
    assert run.returncode == 143, out[-3000:]
    assert "stopped (SIGTERM)" in out and out.strip().splitlines()[-1].startswith("BENCH ")
    assert not _alive(serve_pid), out[-3000:]
    assert not [pid for pid in kernels if _alive(pid)], kernels
