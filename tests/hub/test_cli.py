"""``smartsession class create``: locally into a data dir, and against a running hub with --url."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys

from smartsession.hub import auth
from smartsession.hub.store import Store
from testkit.processes import HubProcess


def cli(*args: str, module: str = "smartsession.hub.cli") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
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


def _post(url: str, body: bytes, token: str | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_every_hub_setting_comes_from_the_command_line_a_config_file_or_the_environment(tmp_path):
    config = tmp_path / "hub_config.py"
    config.write_text("c.HubConfig.max_message_bytes = 200\nc.HubConfig.max_json_depth = 9\n")
    secret = "e" * 64  # from SMARTSESSION_SECRET: tokens signed with it are honoured
    # The command line wins over the file (depth 2, not 9).
    with HubProcess(tmp_path / "data", secret=secret,
                    args=("--config", str(config), "--HubConfig.max_json_depth=2")) as hub:
        join = hub.url + "/smartsession/api/join"
        status, body = _post(join, b'{"name": "' + b"x" * 300 + b'"}')
        assert (status, json.loads(body)["error"]) == (413, "body larger than 200 bytes")
        status, body = _post(join, b'{"a": {"b": {"c": 1}}}')
        assert status == 400 and "deep" in json.loads(body)["error"]
        status, body = _post(hub.url + "/smartsession/api/classes", b'{"title": "Env secret"}',
                             auth.teacher_token(secret, "c0"))
        assert status == 201, body
    assert not (tmp_path / "data" / "secret").exists()  # the environment's secret was used, none was made


@pytest.mark.slow
def test_unknown_options_are_refused_by_name():
    out = cli("hub", "--rate", "5")
    assert out.returncode == 2 and "unrecognized arguments: --rate" in out.stderr
    out = cli("class", "create", "X", "--HubConfig.rate=5", module="smartsession")
    assert out.returncode == 2 and "unrecognized arguments: --HubConfig.rate=5" in out.stderr
    out = cli("hub", "--HubConfig.rate=fast")
    assert out.returncode == 2 and "rate" in out.stdout and "expected a float" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
