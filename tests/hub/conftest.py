"""Fixtures for the hub tests: a real hub on 127.0.0.1 (in-process or a subprocess), a real redis-server,
and small websocket helpers (``kit``) that speak the protocol by hand, so the tests see every byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import weakref
from collections import deque
from types import SimpleNamespace

import pytest
import websockets

from smartsession.hub.client import join_class

CI = os.environ.get("CI") == "true"


@pytest.fixture
def redis_binary():
    path = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if path is None:
        if CI:
            pytest.fail("redis-server is required in CI: install it (see .ci/run)")
        pytest.skip("redis-server not installed")
    return path


def ws_url(url: str, path: str) -> str:
    return "ws" + url[4:] + path


async def connect(url: str, path: str, **kw):
    return await websockets.connect(ws_url(url, path), open_timeout=30, **kw)


async def join(url: str, info: dict, name: str = "Ada") -> dict:
    return await asyncio.get_running_loop().run_in_executor(
        None, join_class, url, info["class_id"], info["join_code"], name
    )


async def hello(ws, token: str) -> dict:
    await ws.send(json.dumps({"type": "hello", "v": 1, "token": token}))
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def student(url: str, info: dict, name: str = "Ada"):
    """A joined, connected student: (websocket, join reply, welcome)."""
    joined = await join(url, info, name)
    ws = await connect(url, f"/smartsession/ws/student/{info['class_id']}/{joined['student_id']}")
    welcome = await hello(ws, joined["token"])
    assert welcome["type"] == "welcome", welcome
    return ws, joined, welcome


async def teacher(url: str, info: dict):
    """A connected teacher: (websocket, snapshot)."""
    ws = await connect(url, f"/smartsession/ws/teacher/{info['class_id']}")
    snap = await hello(ws, info["teacher_token"])
    assert snap["type"] == "snapshot", snap
    return ws, snap


def state(joined: dict, seq: int, **kw) -> str:
    msg = {
        "type": "state", "v": 1, "class_id": joined["class_id"], "student_id": joined["student_id"], "seq": seq,
        "t": time.time(), "state": "focused", "engagement": 80.0, "confidence": 0.9, "features": {"yaw": 3.0},
    }
    msg.update(kw)
    return json.dumps(msg)


async def closed_with(ws, timeout: float = 30) -> tuple[int, str]:
    """Read until the hub closes the connection; return its close code and reason."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, "connection dropped without a close frame"
        return exc.rcvd.code, exc.rcvd.reason


async def eventually(check, timeout: float = 30) -> None:
    """Poll ``check()`` every 20 ms until it holds or ``timeout`` s have passed; the caller asserts after."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def eventually_sync(check, timeout: float = 30) -> None:
    """``eventually`` outside a loop (tests that drive subprocess hubs); the caller asserts after."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


# Events of a batch frame not yet looked at, per connection. Keyed by the connection itself (weakly), not by
# id(ws): ids are reused once a connection is gone, and a new one must not inherit another's leftovers.
_unread: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def until(ws, pred, timeout: float = 30) -> dict:
    """The next message for which ``pred(msg)`` is true (others are skipped; ``batch`` frames unpacked)."""
    deadline = time.monotonic() + timeout
    unread = _unread.setdefault(ws, deque())
    while True:
        if not unread:
            msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
            unread.extend(msg["events"] if msg.get("type") == "batch" else [msg])
        msg = unread.popleft()
        if pred(msg):
            return msg


@pytest.fixture
def kit():
    return SimpleNamespace(
        connect=connect, join=join, hello=hello, student=student, teacher=teacher, state=state,
        closed_with=closed_with, until=until, ws_url=ws_url, eventually=eventually,
        eventually_sync=eventually_sync,
    )


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL cluster for the whole test session (``pg_url`` gives each test a database of its own)."""
    from testkit.processes import PostgresServer, postgres_bindir

    if postgres_bindir() is None:
        if CI:
            pytest.fail("PostgreSQL is required in CI: install it (see .ci/run)")
        pytest.skip("PostgreSQL not installed (apt-get install -y postgresql)")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres):
    """A fresh, empty database on the session's PostgreSQL server."""
    import secrets as _secrets

    import psycopg

    name = "t_" + _secrets.token_hex(6)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def nginx_binary():
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path is None:
        if CI:
            pytest.fail("nginx is required in CI: install it (see .ci/run)")
        pytest.skip("nginx not installed (apt-get install -y nginx)")
    return path
