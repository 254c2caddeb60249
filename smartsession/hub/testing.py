"""Real hubs and a real Redis for tests and benchmarks: a ``smartsession hub`` subprocess, a ``redis-server``.

Both are context managers bound to 127.0.0.1 on free ports; stopping twice is harmless.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from smartsession.hub.client import create_class


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True once the server has closed ``sock`` (reads what is left), within ``within`` seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout} s")


class HubProcess:
    """``smartsession hub`` in a subprocess on a fixed free port, so a restart keeps its URL."""

    def __init__(self, data_dir: str | os.PathLike, redis_url: str = "", secret: str = "", port: int | None = None,
                 log_path: str | os.PathLike | None = None, args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.args = args  # more command-line settings, e.g. ("--HubConfig.rate=5",)
        self.redis_url, self.secret = redis_url, secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else self.data_dir / "hub.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "HubProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "smartsession.hub.cli", "hub", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.redis_url:
            cmd += ["--redis-url", self.redis_url]
        cmd += self.args
        env = {**os.environ, "SMARTSESSION_SECRET": self.secret} if self.secret else None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        _wait(lambda: self.health()["ok"], 90, f"hub on port {self.port}", self.proc)

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/smartsession/health", timeout=2) as resp:
            return json.loads(resp.read())

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin_token").read_text().strip()

    def create_class(self, title: str = "Test class") -> dict:
        return create_class(self.url, title, self.admin_token)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what was acknowledged must still be in the store."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisServer:
    """A throwaway ``redis-server`` on a free 127.0.0.1 port, no persistence."""

    def __init__(self, binary: str | None = None):
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        _wait(ready, 15, "redis-server", self.proc)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
