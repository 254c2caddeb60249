"""Student kernels forked from one preloaded process, so they share the pages of what every kernel imports.

A fresh kernel imports numpy, scikit-learn, ipykernel, ipywidgets and the package on its own: ~150 MB of private
memory before it analyses a frame. :class:`ForkServer` imports them once, single-threaded, and forks a child per
kernel that starts ``IPKernelApp`` on the connection file; the child shares those pages copy-on-write.
:class:`ForkingProvisioner` (entry point ``smartsession-fork`` of ``jupyter_client.kernel_provisioners``) asks it
for kernels and treats the child's pid as its process. Linux only (``prctl``, ``/proc``).
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

#: What every student kernel imports; a module that starts threads at import must not be listed (fork copies
#: only the forking thread). MediaPipe is left to the kernels that use it.
PRELOAD = (
    "numpy",
    "sklearn",
    "skops.io",
    "ipykernel.kernelapp",
    "ipywidgets",
    "anywidget",
    "voila.utils",  # the student notebook's get_query_string: jupyter_server and nbconvert come with it
    "websockets.asyncio.client",
    "smartsession.pages.student",
    "smartsession.analysis",
    "smartsession.classify.model",
    "smartsession.hub.client",
    "smartsession.seams.kernel",
)
#: The longest request line a fork server reads: a connection file path, a working directory and an environment.
MAX_REQUEST = 256 * 1024
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies, so no kernel outlives its server."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def connection_file_of(cmd: list[str]) -> str | None:
    """The connection file of an ``ipykernel_launcher -f FILE`` command, None for any other kernel."""
    if not any(part.endswith("ipykernel_launcher") for part in cmd) or "-f" not in cmd[:-1]:
        return None
    return cmd[cmd.index("-f") + 1]


def kernel_arguments(cmd: list[str]) -> list[str]:
    """The arguments of an ``ipykernel_launcher`` command (what its ``IPKernelApp`` is initialised with)."""
    return cmd[next(i for i, part in enumerate(cmd) if part.endswith("ipykernel_launcher")) + 1:]


# --- the preloaded process ---


class ForkServer:
    """Listens on a UNIX socket; each request line ``{"arguments", "env", "cwd"}`` gets ``{"pid"}`` back."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.children: set[int] = set()

    def preload(self) -> None:
        import importlib

        for name in PRELOAD:
            importlib.import_module(name)
        # Loading the state model imports the scikit-learn estimators it is made of (~350 modules, ~40 MB that
        # each kernel imported for itself); the loaded model itself is not kept, every kernel loads its own.
        from smartsession.classify.model import load_state_model

        load_state_model()
        # Objects made so far stay out of the collector's way, so a child's first collection does not write
        # to (and so copy) every page holding them.
        gc.collect()
        gc.freeze()
        if threading.active_count() != 1:
            raise RuntimeError(f"preloading started threads ({threading.enumerate()}): a fork would lose them")

    def _reap(self, *_: Any) -> None:
        # Every exited child, including one that exits before fork() has noted its pid.
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def _stop(self, *_: Any) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    def serve(self) -> None:
        _die_with_parent()
        self.preload()
        signal.signal(signal.SIGCHLD, self._reap)
        signal.signal(signal.SIGTERM, self._stop)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(self.path)
            os.chmod(self.path, 0o600)
            listener.listen(16)
            print("ready", flush=True)
            os.dup2(2, 1)  # the kernels' output goes to the server's log, not to a pipe nobody reads any more
            while True:
                conn, _ = listener.accept()
                with conn:
                    try:
                        request = json.loads(conn.makefile("rb").readline(MAX_REQUEST))
                        pid = self.fork([str(a) for a in request["arguments"]], dict(request["env"]),
                                        str(request["cwd"]), listener)
                        reply = {"pid": pid}
                    except Exception as err:  # a bad request is refused; the server keeps forking
                        reply = {"error": f"{type(err).__name__}: {err}"}
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def fork(self, arguments: list[str], env: dict[str, str], cwd: str, listener: socket.socket) -> int:
        """A kernel started as ``ipykernel_launcher ARGUMENTS`` would be (``-f CONNECTION_FILE`` among them)."""
        connection_file = connection_file_of(["ipykernel_launcher", *arguments])
        if connection_file is None or not Path(connection_file).is_file():
            raise FileNotFoundError(f"no connection file {connection_file}")
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return pid
        try:  # the child: a kernel, in its own process group as jupyter_client's own kernels are
            listener.close()
            os.setsid()
            _die_with_parent()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            from ipykernel.kernelapp import IPKernelApp

            app = IPKernelApp.instance()
            # Its parent, as jupyter_client's launcher tells the kernels it starts (JPY_PARENT_PID, read when
            # ipykernel was imported, before this fork): without one, the kernel takes itself for `ipython kernel`
            # run by hand and prints its Ctrl-C note on serve's terminal.
            app.parent_handle = os.getppid()
            app.initialize(arguments)
            app.start()
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
        os._exit(0)


# --- the server side ---


class ForkedKernel:
    """What jupyter_client expects of a kernel's ``Popen``, for a kernel the fork server started (and reaps)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0  # the fork server reaped it; its status stays there
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkServerProcess:
    """The fork server of this Jupyter server: started on first use, gone when this process ends."""

    _instance: "ForkServerProcess | None" = None
    _lock = threading.Lock()  # a pool starts its kernels together: one fork server for all of them

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="smartsession-fork-")
        self.path = os.path.join(self.dir, "fork.sock")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smartsession.serve.forking", self.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        )
        atexit.register(self.close)
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            self.process.kill()
            raise RuntimeError(
                f"the kernel fork server did not start (exit {self.process.wait()}): see the log above; "
                "serve without --fork-kernels meanwhile"
            )

    def close(self) -> None:
        """Stop the fork server (it kills its kernels) and remove its socket; closing twice is harmless."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def get(cls) -> "ForkServerProcess":
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
            return cls._instance

    def fork(self, arguments: list[str], env: dict[str, str], cwd: str) -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(self.path)
            s.sendall(json.dumps({"arguments": arguments, "env": env, "cwd": cwd}).encode() + b"\n")
            reply = json.loads(s.makefile("rb").readline(MAX_REQUEST) or b"{}")
        if "pid" not in reply:
            raise RuntimeError(f"the kernel fork server refused a kernel: {reply.get('error', 'no answer')}")
        return int(reply["pid"])


class ForkingProvisioner(LocalProvisioner):
    """Starts ipykernel kernels as children of the fork server; any other kernel as LocalProvisioner does."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        if connection_file_of(cmd) is None or sys.platform != "linux":
            return await super().launch_kernel(cmd, **kwargs)
        env = {k: str(v) for k, v in (kwargs.get("env") or os.environ).items()}
        cwd = str(kwargs.get("cwd") or os.getcwd())
        server = await asyncio.to_thread(ForkServerProcess.get)
        pid = await asyncio.to_thread(server.fork, kernel_arguments(cmd), env, cwd)
        self.process = ForkedKernel(pid)
        self.pid = self.pgid = pid  # its own session and process group (setsid in the child)
        self.cwd = cwd
        return self.connection_info


if __name__ == "__main__":
    ForkServer(sys.argv[1]).serve()
