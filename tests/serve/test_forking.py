"""Student kernels forked from one preloaded process (``smartsession serve --fork-kernels``): they start, run the
student page, analyse real-face frames, shut down, leave no zombie, and share memory with each other."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit import memory
from smartsession.serve.forking import ForkedKernel, connection_file_of
from testkit.pageclient import PageClient, jpeg_frames
from testkit.serving import kernel_id, running_server

ROOT = Path(__file__).resolve().parents[2]


def test_only_ipykernel_commands_are_forked():
    assert connection_file_of([sys.executable, "-m", "ipykernel_launcher", "-f", "/tmp/kernel-1.json"]) == (
        "/tmp/kernel-1.json"
    )
    assert connection_file_of(["R", "--slave", "-f", "/tmp/kernel-1.json"]) is None
    assert connection_file_of([sys.executable, "-m", "ipykernel_launcher", "-f"]) is None


def test_a_forked_kernel_is_polled_signalled_and_waited_for_like_a_popen():
    child = subprocess.Popen(["sleep", "30"])
    kernel = ForkedKernel(child.pid)
    assert kernel.poll() is None
    kernel.send_signal(signal.SIGTERM)
    child.wait(10)  # here the test reaps it; in serve the fork server does
    assert kernel.wait(10) == 0 and kernel.poll() == 0
    kernel.kill()  # gone already: harmless


def _zombies(pids):
    states = {}
    for pid in pids:
        try:
            states[pid] = (memory.PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
    return [pid for pid, state in states.items() if state == "Z"]


def _fork_servers():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and memory.is_fork_server(int(p))]


@pytest.mark.slow
def test_forked_kernels_serve_the_student_page_and_go_away(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from capacity import jpegs_of, recorded_frames

    jpegs = jpegs_of(recorded_frames(20))

    async def student(server, kid):
        async with PageClient.for_kernel(server.url, kid) as page:
            await page.consent("Forked student")
            stop = asyncio.Event()
            stream = asyncio.create_task(page.stream(jpeg_frames(jpegs), 5, stop))
            await asyncio.sleep(6)
            stop.set()
            await stream
            return page.frames

    with running_server(tmp_path, pool_size=2, timeout=300, fork_kernels=True, refill_quiet=3600,
                        analysis="server") as server:
        server.wait_warm(600)
        kernels = memory.kernels_of(server.process.pid)
        assert len(kernels) == 2
        (fork_server,) = [p for p in memory.children(server.process.pid) if memory.is_fork_server(p)]
        assert set(memory.children(fork_server)) == set(kernels)
        # Forks share what the fork server imported: each one's private part is well below its resident size.
        assert all(fp.uss < 0.75 * fp.rss for fp in kernels.values()), kernels

        response = server.request(server.join_url, timeout=120)
        kid = kernel_id(response.text)
        frames = asyncio.run(student(server, kid))
        assert frames.processed >= 10 and frames.roundtrips, frames
        assert server.shutdown_kernel(kid) == 204
        deadline = time.monotonic() + 60
        while len(memory.kernels_of(server.process.pid)) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(memory.kernels_of(server.process.pid)) == 1
        assert not _zombies(memory.children(fork_server))
    # This server's own fork server: other servers (another test worker's) may run theirs meanwhile.
    deadline = time.monotonic() + 30
    while fork_server in _fork_servers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fork_server not in _fork_servers(), "the fork server outlived smartsession serve"
    assert not any(memory.footprint(pid) for pid in kernels), "a forked kernel outlived smartsession serve"


def test_kernels_are_forked_by_default_on_linux_and_can_be_spawned():
    from smartsession.serve.app import SmartSessionApp

    assert SmartSessionApp.class_traits()["fork_kernels"].default_value is sys.platform.startswith("linux")
    assert SmartSessionApp.flags["no-fork-kernels"][0] == {"SmartSessionApp": {"fork_kernels": False}}
    assert SmartSessionApp.flags["fork-kernels"][0] == {"SmartSessionApp": {"fork_kernels": True}}
    from smartsession.options import traitlets_argv
    from smartsession.serve.options import OPTIONS

    args = argparse.Namespace(**{o.dest: None for o in OPTIONS}, settings=[])
    args.no_fork_kernels = True
    assert traitlets_argv(args, OPTIONS) == ["--SmartSessionApp.fork_kernels=False"]
