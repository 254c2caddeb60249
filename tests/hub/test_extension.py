"""The hub as a Jupyter server extension: a real ``jupyter server`` subprocess with a base URL and a token."""

from __future__ import annotations

import pytest

import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

from smartsession.hub.client import StudentPublisher, TeacherSubscriber, create_class, join_class
from testkit.processes import _wait, free_port
from smartsession.schema import StateMessage


@pytest.mark.slow
def test_hub_runs_inside_a_token_protected_jupyter_server(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}/research/"
    data_dir = tmp_path / "data"
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--ServerApp.base_url=/research/", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.jpserver_extensions={'smartsession.hub.extension': True}", f"--HubConfig.data_dir={data_dir}",
         "--HubConfig.commit_interval=5"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
    )
    try:
        def healthy() -> bool:
            with urllib.request.urlopen(base + "smartsession/health", timeout=2) as resp:
                return json.loads(resp.read())["ok"]

        _wait(healthy, 120, "jupyter server with the hub extension", proc)
        # Jupyter's own API stays behind its token; the hub's routes use the hub's tokens.
        try:
            urllib.request.urlopen(base + "api/contents", timeout=5)
            raise AssertionError("jupyter contents API answered without a token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
        url = base.rstrip("/")
        info = create_class(url, "Research", (data_dir / "admin_token").read_text().strip())
        joined = join_class(url, info["class_id"], info["join_code"], "Participant 1")

        async def main():
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=url) as teacher:
                await teacher.wait_snapshot(30)
                async with StudentPublisher(info["class_id"], joined["student_id"], joined["token"], url=url) as pub:
                    await pub.wait_connected(30)
                    sent = pub.publish(StateMessage("", "", 0, time.time(), "focused", 88.0, 0.9))
                    await pub.wait_acked(sent.seq, 30)
                deadline = time.monotonic() + 30
                while (teacher.room.students.get(joined["student_id"]) is None
                       or teacher.room.students[joined["student_id"]].state is None):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                assert teacher.room.students[joined["student_id"]].state["engagement"] == 88.0
                # One more state, seen by the teacher but not yet committed (commits come every 5 s here)...
                async with StudentPublisher(info["class_id"], joined["student_id"], joined["token"], url=url) as pub:
                    await pub.wait_connected(30)
                    pub.publish(StateMessage("", "", 0, time.time(), "distracted", 42.0, 0.9))
                    while teacher.room.students[joined["student_id"]].state["engagement"] != 42.0:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.01)

        asyncio.run(asyncio.wait_for(main(), 60))
        # ...is in the store once the server has shut down: the extension stops the hub, which commits.
        proc.terminate()
        assert proc.wait(30) == 0
        with sqlite3.connect(data_dir / "smartsession.sqlite3") as db:
            stored = [row[0] for row in db.execute("SELECT engagement FROM states ORDER BY received")]
        assert stored == [88.0, 42.0], (stored, (tmp_path / "jupyter.log").read_text()[-3000:])
        assert "smartsession hub stopped" in (tmp_path / "jupyter.log").read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        log.close()
