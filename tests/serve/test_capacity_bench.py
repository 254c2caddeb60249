"""benchmarks/capacity.py end to end at a tiny N: a real server, real kernels fed real-face JPEGs by the page
client, one real Chromium student, and the BENCH line it ends with."""

from __future__ import annotations

import json
import subprocess
import sys
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
         "--seconds", "4"],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("BENCH "), run.stdout[-3000:]
    bench = json.loads(last[len("BENCH "):])
    assert {"browser_mode_students", "server_mode_students", "kernel_uss_mb", "roundtrip_p90_ms",
            "parity_state_agreement"} <= bench.keys()
    assert 0.0 <= bench["parity_state_agreement"] <= 1.0
    # Jupyter's own floor, measured beside: echo kernels answered every message, at a cost and a ceiling.
    floor = bench["jupyter_floor"]
    assert floor["messages"] > 0 and floor["server_ms_per_message"] > 0 and floor["kernel_ms_per_message"] > 0
    assert floor["ceiling_students"] > 0
    # Two students (one simulated, one Chromium) on one real server: a figure, not a target.
    assert bench["server_mode_students"] in (0, 2)
    assert bench["browser_mode_students"] in (None, 0, 2)  # None: this checkout has no browser analysis mode
    leftovers = subprocess.run(["pgrep", "-f", "smartsession-(capacity|floor)-"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"processes of the benchmark still running: {leftovers}"
