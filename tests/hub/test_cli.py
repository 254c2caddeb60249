"""``smartsession class create``: locally into a data dir, and against a running hub with --url."""

from __future__ import annotations

import json
import subprocess
import sys

from smartsession.hub import auth
from smartsession.hub.store import Store
from smartsession.hub.testing import HubProcess


def cli(*args: str, module: str = "smartsession.hub.cli") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)


def test_class_create_locally_then_served_by_a_hub(tmp_path):
    data = tmp_path / "data"
    out = cli("class", "create", "Chemistry 1A", "--data-dir", str(data), module="smartsession")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    secret = (data / "secret").read_text().strip()
    assert auth.verify_token(secret, info["teacher_token"]).class_id == info["class_id"]
    assert auth.verify_token(secret, info["admin_token"]).role == "admin"
    assert info["join_path"] == f"/voila/render/student.ipynb?class={info['class_id']}&join={info['join_code']}"
    assert info["teacher_path"].startswith(f"/voila/render/teacher.ipynb?class={info['class_id']}&token=")
    with Store(data) as store:
        assert store.class_info(info["class_id"])["title"] == "Chemistry 1A"
    with HubProcess(data) as hub:  # same secret: the hub honours what the CLI issued
        remote = cli("class", "create", "Chemistry 1B", "--url", hub.url, "--data-dir", str(data))
        assert remote.returncode == 0, remote.stderr
        created = json.loads(remote.stdout)
        assert created["join_url"] == hub.url + created["join_path"]
        assert "admin_token" not in created
        by_teacher = cli("class", "create", "Chemistry 1C", "--url", hub.url, "--token", info["teacher_token"])
        assert by_teacher.returncode == 0, by_teacher.stderr
        refused = cli("class", "create", "Nope", "--url", hub.url, "--token", "x.y")
        assert refused.returncode == 1 and "401 malformed token" in refused.stdout and not refused.stderr
