"""The floor under every student kernel: what Jupyter's own stack costs per frame with no SmartSession work at all.

A plain ``jupyter server`` (the same jupyter_server and ipykernel, with serve's kernel manager and kernel
websocket, which starts kernels with the arguments ``smartsession serve`` gives its own) runs N kernels whose
only code is a comm that answers each message with a small one, as the camera widget acks a frame. A client
speaking Jupyter's v1 kernel websocket sends each kernel a comm message with a ~1 KB buffer (a packed face's
size) ``FPS`` times a second and waits for the answer.

The CPU the server and the kernels spend per message is the least any design that gives each student a
Jupyter kernel can spend; ``ceiling_students`` is how many students this machine's cores could carry at that
cost with nothing else running: no analysis, no hub, no browser, no client.

Run alone: ``.venv/bin/python benchmarks/floor.py [--kernels 20] [--seconds 12]``; ``capacity.py`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # testkit: test and benchmark support

from testkit import memory
from testkit.pageclient import PageClient, message
from testkit.serving import free_port

FPS = 5.0
BUFFER = bytes(1100)  # a packed face is ~1.1 KB

ECHO = """
from comm import get_comm_manager

def _floor_target(comm, open_msg):
    def echo(msg):
        comm.send({"seq": msg["content"]["data"]["seq"]})
    comm.on_msg(echo)

get_comm_manager().register_target("floor", _floor_target)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (0 once it is gone)."""
    try:
        fields = (memory.PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class EchoClient(PageClient):
    """One kernel's websocket, as :class:`PageClient` speaks it: runs the echo cell, opens the comm, then sends a
    message a tick and times the answers."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.comm_id = secrets.token_hex(16)
        self.sent: dict[int, float] = {}
        self.roundtrips: list[float] = []
        self.ticks = self.skipped = 0

    async def open_echo(self) -> None:
        await self.handled(message("execute_request", {"code": ECHO, "silent": True, "store_history": False,
                                                       "user_expressions": {}, "allow_stdin": False}, self.session))
        await self.handled(message("comm_open", {"comm_id": self.comm_id, "target_name": "floor", "data": {}},
                                   self.session))

    def _on_message(self, msg: dict, now: float) -> None:
        if msg["msg_type"] == "comm_msg" and msg["content"].get("comm_id") == self.comm_id:
            sent = self.sent.pop(msg["content"]["data"].get("seq"), None)
            if sent is not None:
                self.roundtrips.append(now - sent)
        elif msg["msg_type"] == "error":
            raise RuntimeError(f"the echo cell failed: {msg['content'].get('evalue')}")
        else:
            super()._on_message(msg, now)

    async def stream_echo(self, until: asyncio.Event) -> None:
        seq, period, tick = 0, 1 / FPS, time.monotonic()
        while not until.is_set():
            self.ticks += 1
            if self.sent:  # one in flight: each message waits for the answer to the last
                self.skipped += 1
            else:
                seq += 1
                self.sent[seq] = time.time()  # the reader stamps answers with time.time() too
                await self.send(message("comm_msg", {"comm_id": self.comm_id, "data": {"seq": seq}}, self.session,
                                        buffers=[BUFFER]))
            tick += period
            await asyncio.sleep(max(0.0, tick - time.monotonic()))


def _http(url: str, token: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def jupyter_floor(kernels: int = 20, seconds: float = 12.0) -> dict:
    """Per-message CPU of a plain Jupyter server and its echo kernels, and the students that implies."""
    tmp = Path(tempfile.mkdtemp(prefix="smartsession-floor-"))
    spec = tmp / "share" / "jupyter" / "kernels" / "floor"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "floor", "language": "python"}))
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_PATH": str(tmp / "share" / "jupyter"), "JUPYTER_RUNTIME_DIR": str(tmp / "rt")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--IdentityProvider.token={token}", "--allow-root",
         f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={tmp}",
         "--KernelManager.transport=ipc", "--ServerApp.log_level=WARN",
         # serve's own kernel manager (the activity watch that reads headers only) and websocket (no Nagle)
         "--ServerApp.kernel_manager_class=smartsession.serve.pool.QuietRefillKernelManager",
         "--ServerApp.kernel_websocket_connection_class=smartsession.serve.channels.LiveKernelConnection"],
        env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=None if os.environ.get("FLOOR_LOG") else subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _http(f"{base}/api/status", token)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("jupyter server did not start") from None
                time.sleep(0.3)
        ids = [_http(f"{base}/api/kernels", token, "POST", {"name": "floor"})["id"] for _ in range(kernels)]

        async def run() -> dict:
            clients = [EchoClient(f"ws://127.0.0.1:{port}/api/kernels/{kid}/channels?token={token}"
                                  f"&session_id={secrets.token_hex(8)}") for kid in ids]
            for client in clients:
                await client.__aenter__()
                await client.open_echo()
            stop = asyncio.Event()
            tasks = [asyncio.create_task(c.stream_echo(stop)) for c in clients]
            await asyncio.sleep(3)  # past the first messages' imports and caches
            for c in clients:
                c.roundtrips.clear()
                c.ticks = c.skipped = 0
            pids = memory.children(server.pid)
            before = {pid: cpu_seconds(pid) for pid in [server.pid, *pids]}
            me = cpu_seconds(os.getpid())
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            elapsed = time.monotonic() - t0
            used = {pid: cpu_seconds(pid) - cpu for pid, cpu in before.items()}
            client_s = cpu_seconds(os.getpid()) - me
            answered = sum(len(c.roundtrips) for c in clients)
            ticks = sum(c.ticks for c in clients)
            roundtrips = sorted(rt * 1000 for c in clients for rt in c.roundtrips)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.close()
            server_ms = 1000 * used[server.pid] / max(answered, 1)
            kernel_ms = 1000 * sum(v for p, v in used.items() if p != server.pid) / max(answered, 1)
            cores = len(os.sched_getaffinity(0))
            return {
                "kernels": kernels,
                "messages": answered,
                "skipped": round(sum(c.skipped for c in clients) / max(ticks, 1), 4),
                "roundtrip_p50_ms": round(roundtrips[len(roundtrips) // 2], 2) if roundtrips else None,
                "server_ms_per_message": round(server_ms, 3),
                "kernel_ms_per_message": round(kernel_ms, 3),
                "client_ms_per_message": round(1000 * client_s / max(answered, 1), 3),
                "window_s": round(elapsed, 1),
                # All cores doing nothing but Jupyter's share of each frame, at FPS frames a second a student.
                "ceiling_students": int(cores * 1000 / (FPS * (server_ms + kernel_ms))) if answered else 0,
            }

        return asyncio.run(run())
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    figures = jupyter_floor(args.kernels, args.seconds)
    print(f"Jupyter's floor, {figures['kernels']} echo kernels at {FPS:.0f} messages/s each: server "
          f"{figures['server_ms_per_message']} ms + kernel {figures['kernel_ms_per_message']} ms of CPU a message "
          f"-> at most {figures['ceiling_students']} students on {len(os.sched_getaffinity(0))} cores")
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
