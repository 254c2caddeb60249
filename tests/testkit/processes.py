"""Real hubs and the real servers around them for tests and benchmarks: ``smartsession hub`` subprocesses,
``redis-server``, a PostgreSQL cluster and nginx in front. All are context managers bound to 127.0.0.1 on free
ports; stopping twice is harmless.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
                 log_path: str | os.PathLike | None = None, args: tuple[str, ...] = (), store_url: str = ""):
        self.data_dir = Path(data_dir)
        self.args = args  # more command-line settings, e.g. ("--HubConfig.rate=5",)
        self.redis_url, self.secret, self.store_url = redis_url, secret, store_url
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
        if self.store_url:
            cmd += ["--store", self.store_url]
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
        self.start()
        return self

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        _wait(ready, 15, "redis-server", self.proc)

    def stop(self) -> None:
        """Stop it (its data goes with it: no persistence); ``start()`` brings up an empty one on the same port."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __exit__(self, *exc) -> None:
        self.stop()


def _as_unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run as ``nobody`` when we are root: PostgreSQL refuses to run as root, nginx need not."""
    if os.geteuid() != 0:
        return cmd
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "nobody", "--", *cmd]


def _private_tmpdir(prefix: str) -> Path:
    """A fresh directory under the system temp dir that the unprivileged user owns (pytest's own tmp_path
    sits under a root-only directory, which ``nobody`` cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # nobody:nogroup
    return path


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian's /usr/lib/postgresql/N/bin), or None."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")  # elsewhere, its tools sit next to it (resolved: a symlink may point there)
    return Path(found).resolve().parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir, on a free 127.0.0.1 port and a socket in that dir, run
    by an unprivileged user; ``trust`` auth on loopback only. ``stop()``/``start()`` restart it in place."""

    def __init__(self, bindir: str | os.PathLike | None = None):
        self.bindir = Path(bindir) if bindir else postgres_bindir()
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL is not installed: apt-get install -y postgresql")
        self.port = free_port()
        self.url = f"postgresql://smartsession@127.0.0.1:{self.port}/smartsession"
        self.dir: Path | None = None

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(_as_unprivileged([str(self.bindir / args[0]), *args[1:]]), timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.dir)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout.decode(errors='replace')}")

    def __enter__(self) -> "PostgresServer":
        self.dir = _private_tmpdir("smartsession-pg-")
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "smartsession", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        try:
            self.start()
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "smartsession", "smartsession")
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "postgres.log"), "-o", options,
                  "-w", "-t", "90", "start")

    def stop(self) -> None:
        if self.dir is not None and (self.dir / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None


class Nginx:
    """nginx with a site config (``deploy/nginx/smartsession.conf``) whose upstream servers and listen address
    are replaced by ``upstreams`` (host:port) and a free 127.0.0.1 port; run unprivileged from a temp dir."""

    def __init__(self, site_conf: str | os.PathLike, upstreams: list[str], binary: str | None = None):
        self.binary = binary or shutil.which("nginx") or "/usr/sbin/nginx"
        self.site = Path(site_conf).read_text()
        self.upstreams = upstreams
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        servers = "".join(f"    server {u} max_fails=1 fail_timeout=5s;\n" for u in self.upstreams)
        site = re.sub(r"(?m)^    server \S+:\d+ .*\n", "", self.site, count=0)
        site = site.replace("    keepalive", servers + "    keepalive", 1)
        site = re.sub(r"(?m)^    listen 80;", f"    listen 127.0.0.1:{self.port};", site)
        d = self.dir
        site = site.replace("/var/log/nginx/", f"{d}/")  # the shipped access log, in the temp dir
        # What Debian's /etc/nginx/nginx.conf provides around conf.d, with every path in our temp dir.
        # Two descriptors per proxied websocket: the benchmark's 2000 students need more than the defaults.
        return (f"pid {d}/nginx.pid;\nworker_processes 1;\nworker_rlimit_nofile 16384;\n"
                f"error_log {d}/error.log;\nevents {{ worker_connections 8192; }}\n"
                f"http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n"
                f" proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n"
                f" scgi_temp_path {d}/scgi;\n{site}}}\n")

    def __enter__(self) -> "Nginx":
        self.dir = _private_tmpdir("smartsession-nginx-")
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            _as_unprivileged([self.binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log"),
                              "-g", "daemon off;"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() or True, 30,
                  "nginx", self.proc)
        except BaseException:
            error_log = (self.dir / "error.log").read_text(errors="replace") if (self.dir / "error.log").exists() else ""
            self.__exit__()
            raise RuntimeError(f"nginx did not start: {error_log.strip()[-2000:]}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
