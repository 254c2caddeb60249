"""A leaked teacher link can be revoked: ``smartsession class rotate-token`` (or its API) refuses every teacher
token of the class issued before it, closes the class's teacher pages on every hub of the deployment, and prints
a new link."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time

import pytest
import redis as redis_py

from smartsession.hub.auth import verify_token
from smartsession.hub.client import HubError, TeacherSubscriber, create_class, rotate_teacher_token
from smartsession.hub.protocol import CloseCode
from smartsession.hub.relay import backplane_key, seal
from smartsession.hub.standalone import running_hub
from testkit.processes import HubProcess, RedisServer


def test_rotating_revokes_old_teacher_tokens_everywhere_they_are_checked(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Leaky")
            old = info["teacher_token"]
            ws, _ = await kit.teacher(url, info)
            loop = asyncio.get_running_loop()
            with pytest.raises(HubError, match="admin token"):
                await loop.run_in_executor(None, rotate_teacher_token, url, info["class_id"], old)
            new = await loop.run_in_executor(None, rotate_teacher_token, url, info["class_id"], hub.admin_token)
            assert new["teacher_token"] != old and new["class_id"] == info["class_id"]
            # The open teacher page is closed; the old token cannot come back, mint classes or export.
            code, reason = await kit.closed_with(ws)
            assert code == CloseCode.AUTH_FAILED and "replaced" in reason
            again = await kit.connect(url, f"/smartsession/ws/teacher/{info['class_id']}")
            await again.send(json.dumps({"type": "hello", "v": 1, "token": old}))
            code, reason = await kit.closed_with(again)
            assert code == CloseCode.AUTH_FAILED and "replaced" in reason
            with pytest.raises(HubError, match="replaced"):
                await loop.run_in_executor(None, create_class, url, "Minted", old)
            async with TeacherSubscriber(info["class_id"], new["teacher_token"], url=url) as teacher:
                snap = await teacher.wait_snapshot(30)
            assert snap.title == "Leaky"

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_command_rotates_in_the_local_store(tmp_path):
    data = tmp_path / "data"
    run = lambda *a: subprocess.run([sys.executable, "-m", "smartsession", "class", *a, "--data-dir", str(data)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    made = run("create", "Physics")
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    rotated = run("rotate-token", info["class_id"])
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["teacher_token"] != info["teacher_token"]
    missing = run("rotate-token", "nosuchclass")
    assert missing.returncode == 1 and "no class 'nosuchclass'" in missing.stdout

    async def main():
        async with running_hub(data_dir=data) as (hub, url):
            for token, current in ((info["teacher_token"], False), (new["teacher_token"], True)):
                claims = verify_token(hub.secret, token)
                assert await hub.teacher_token_current(claims) is current

    asyncio.run(main())


@pytest.mark.redis
@pytest.mark.slow
def test_a_rotation_on_one_node_closes_and_refuses_the_old_link_on_every_node(tmp_path, redis_binary, pg_url, kit):
    secret = secrets.token_hex(32)
    with RedisServer(redis_binary) as redis, \
            HubProcess(tmp_path / "a", redis_url=redis.url, secret=secret, store_url=pg_url) as hub_a, \
            HubProcess(tmp_path / "b", redis_url=redis.url, secret=secret, store_url=pg_url) as hub_b:
        info = hub_a.create_class("Leaky")
        class_id, old = info["class_id"], info["teacher_token"]
        r = redis_py.Redis.from_url(redis.url)

        async def alive(ws) -> None:
            await asyncio.wait_for(await ws.ping(), 10)  # raises ConnectionClosed if the hub closed it

        async def main():
            on_a, _ = await kit.teacher(hub_a.url, info)
            on_b, _ = await kit.teacher(hub_b.url, info)
            # A revocation notice is only a cue to look in the shared store: forged (with a guessed key, or even
            # sealed with the secret) while nothing was rotated, it closes nobody.
            notice = json.dumps({"type": "revoked", "class_id": class_id})
            for key in (backplane_key("guess"), backplane_key(secret)):
                r.publish(f"smartsession:class:{class_id}", seal(key, class_id, "attacker", [notice], time.time()))
            await asyncio.sleep(1.5)
            await alive(on_a)
            await alive(on_b)
            # Rotated through node A (as the command with --url does, nginx picking a node): the old link's pages
            # close on both nodes, and neither takes it back.
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(None, rotate_teacher_token, hub_a.url, class_id, hub_a.admin_token)
            for ws in (on_a, on_b):
                code, reason = await kit.closed_with(ws)
                assert code == CloseCode.AUTH_FAILED and "replaced" in reason
            for hub in (hub_a, hub_b):
                again = await kit.connect(hub.url, f"/smartsession/ws/teacher/{class_id}")
                await again.send(json.dumps({"type": "hello", "v": 1, "token": old}))
                code, reason = await kit.closed_with(again)
                assert code == CloseCode.AUTH_FAILED and "replaced" in reason
            # The new link opens the class on the other node.
            fresh, snap = await kit.teacher(hub_b.url, {**info, "teacher_token": new["teacher_token"]})
            assert snap["title"] == "Leaky"
            await alive(fresh)
            await fresh.close()

        asyncio.run(asyncio.wait_for(main(), 90))
        for hub in (hub_a, hub_b):
            assert "Traceback" not in hub.log_path.read_text()
