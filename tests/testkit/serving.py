"""A real ``smartsession serve`` subprocess for tests and benchmarks, and the class-arrival measurement.

``with running_server(tmp_path) as srv:`` starts it on a free 127.0.0.1 port with a fresh data dir and one class;
``srv.url``, ``srv.teacher_url``, ``srv.join_url``... are ready to open; the server is stopped on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

SERVER_FILE = "serve.json"  # written by smartsession.serve.app once it listens
#: Student pages a test server serves at once unless told: fixed, because the default follows the machine's
#: memory and a test must not pass on one machine and fail on another.
TEST_MAX_STUDENTS = 64
_KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


@dataclass
class RunningServer:
    """A live ``smartsession serve``: its links, its data dir and small HTTP helpers."""

    url: str  # ends with "/"
    teacher_url: str
    join_url: str
    class_id: str
    teacher_token: str
    join_code: str
    data_dir: Path
    admin_token: str
    process: subprocess.Popen
    log_path: Path
    certfile: str | None = None
    title: str = ""
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    def request(
        self, path_or_url: str, method: str = "GET", body: bytes | dict | None = None, headers=None, timeout=60.0
    ) -> Response:
        """One HTTP request (relative paths are joined to ``url``); error statuses are returned, not raised."""
        url = path_or_url if "://" in path_or_url else self.url + path_or_url.lstrip("/")
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as r:
                return Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, dict(err.headers), err.read())

    def health(self) -> dict:
        return self.request("smartsession/health", timeout=10).json()

    def wait_warm(self, timeout: float = 300.0) -> dict:
        """Wait until every pool kernel has run the student notebook; return the health answer."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health.get("warm"):
                return health
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"pool not warm after {timeout:.0f} s: {health}\n{self.log_tail()}")
            time.sleep(0.5)

    def create_class(self, title: str) -> dict:
        """A further class through the hub's API (with the admin token): id, teacher token, join code, URLs."""
        r = self.request(
            "smartsession/api/classes",
            "POST",
            {"title": title},
            {"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
        )
        if r.status != 201:
            raise RuntimeError(f"class create failed ({r.status}): {r.text}")
        return r.json()

    def shutdown_kernel(self, kernel_id: str) -> int:
        """End a page's kernel as its closing tab would; the HTTP status (204 when it was running)."""
        # Jupyter wants the _xsrf cookie echoed in a header (double submit); any value of ours will do.
        xsrf = os.urandom(16).hex()
        headers = {"Cookie": f"_xsrf={xsrf}", "X-XSRFToken": xsrf}
        return self.request(f"api/kernels/{kernel_id}", "DELETE", headers=headers).status

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _options_argv(options: dict) -> list[str]:
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:  # 0 is a value (0 == False)
            argv += [flag, str(value)]
    return argv


def _stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Kernels are the server's children in its own process group: leave none behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@contextlib.contextmanager
def running_server(
    tmp_path: str | os.PathLike,
    pool_size: int = 1,
    dashboards: str | os.PathLike | None = None,
    *,
    timeout: float = 120.0,
    data_dir: str | os.PathLike | None = None,
    python: str = sys.executable,
    kernel_log: bool = True,
    **options,
) -> Iterator[RunningServer]:
    """Start ``smartsession serve`` on a free 127.0.0.1 port; yield a :class:`RunningServer`; stop it on exit.

    ``options`` are further ``serve`` options (``self_signed=True``, ``refill_quiet=1``, ``class_title=...``).
    Every test client comes from 127.0.0.1, so there is no limit per address unless ``max_per_address`` is given,
    and ``max_students`` is :data:`TEST_MAX_STUDENTS` unless given.
    ``data_dir`` defaults to ``tmp_path/data``; pass the same one again to restart on the same store.
    ``python`` is the interpreter that runs ``-m smartsession`` (another environment's, to test an install).
    ``kernel_log`` logs kernels started, pre-heated and shut down, which tests follow (False: the teacher's terminal).
    The server's output goes to ``tmp_path/serve-<port>.log`` and is printed when the block fails.
    """
    tmp_path = Path(tmp_path)
    port = free_port()
    data_dir = Path(data_dir) if data_dir is not None else tmp_path / "data"
    log_path = tmp_path / f"serve-{port}.log"
    argv = [python, "-m", "smartsession", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--pool-size", str(pool_size)]
    if dashboards is not None:
        argv += ["--dashboards", str(dashboards)]
    options.setdefault("max_per_address", 0)
    options.setdefault("max_teacher_pages_per_link", 0)  # tests open one class's teacher page many times
    options.setdefault("max_address_share", 1)  # and every test page comes from 127.0.0.1
    options.setdefault("max_students", TEST_MAX_STUDENTS)
    argv += _options_argv(options)
    if kernel_log:
        argv.append("--SmartSessionApp.log_level=INFO")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTSESSION_HUB_", "VOILA_"))}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=tmp_path
        )
    server = None
    try:
        server = _wait_ready(process, data_dir, log_path, timeout)
        yield server
    except BaseException:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        print(f"--- smartsession serve log ({log_path}) ---\n{text[-20000:]}", file=sys.stderr)
        raise
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen, data_dir: Path, log_path: Path, timeout: float) -> RunningServer:
    deadline = time.monotonic() + timeout
    record = None
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"smartsession serve exited with {process.returncode}: see {log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"smartsession serve did not answer within {timeout:.0f} s: see {log_path}")
        if record is None:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                candidate = json.loads((data_dir / SERVER_FILE).read_text())
                if candidate.get("pid") == process.pid:
                    record = candidate
        if record is not None:
            certfile = record.get("certfile") or None
            server = RunningServer(
                url=record["url"],
                teacher_url=record["teacher_url"],
                join_url=record["join_url"],
                class_id=record["class_id"],
                teacher_token=record["teacher_token"],
                join_code=record["join_code"],
                title=record.get("title", ""),
                data_dir=data_dir,
                admin_token=(data_dir / "admin_token").read_text().strip(),
                process=process,
                log_path=log_path,
                certfile=certfile,
                ssl_context=ssl.create_default_context(cafile=certfile) if certfile else None,
            )
            with contextlib.suppress(OSError, ValueError):
                if server.health().get("ok"):
                    return server
        time.sleep(0.2)


def kernel_id(page_html: str) -> str | None:
    """The kernel a rendered Voila page talks to (from its page config)."""
    match = _KERNEL_ID.search(page_html)
    return match.group(1) if match else None


def class_arrival(server: RunningServer, students: int, timeout: float = 300.0) -> dict:
    """``students`` student pages requested at once; seconds until each page's HTML is complete.

    Run it against a warm pool (``server.wait_warm()``) for the figure a class sees when it arrives together.
    The pages' kernels are shut down afterwards, as if the tabs closed.
    """

    def one(_):
        start = time.perf_counter()
        response = server.request(server.join_url, timeout=timeout)
        return time.perf_counter() - start, response

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=students) as pool:
        results = list(pool.map(one, range(students)))
    wall = time.perf_counter() - start
    seconds = sorted(s for s, _ in results)
    failed = [r.status for _, r in results if r.status != 200]
    for _, response in results:
        kid = kernel_id(response.text)
        if kid:
            server.shutdown_kernel(kid)
    return {
        "students": students,
        "wall_s": round(wall, 3),
        "p50_s": round(statistics.median(seconds), 3),
        "max_s": round(seconds[-1], 3),
        "failed": len(failed),
    }
