"""A leaked teacher link can be revoked: ``smartsession class rotate-token`` (or its API) refuses every teacher
token of the class issued before it, closes the class's teacher pages on that hub, and prints a new link."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from smartsession.hub.auth import verify_token
from smartsession.hub.client import HubError, TeacherSubscriber, create_class, rotate_teacher_token
from smartsession.hub.protocol import CloseCode
from smartsession.hub.standalone import running_hub


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
