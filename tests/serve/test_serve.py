"""`smartsession serve` as a whole: a real subprocess on 127.0.0.1 with a preheated pool and the hub.

Startup, health and the pool, pages from warm kernels, an exhausted pool, refills that wait for quiet.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from testkit.serving import class_arrival, kernel_id, running_server


def test_server_prints_both_links_and_writes_them_for_scripts(server):
    log = server.log_text()
    assert server.teacher_url in log and server.join_url in log
    assert server.teacher_url.startswith("http://127.0.0.1:") and f"class={server.class_id}" in server.teacher_url
    assert f"token={server.teacher_token}" in server.teacher_url
    assert server.join_url.endswith(f"/voila/render/student.ipynb?class={server.class_id}&join={server.join_code}")
    record = json.loads((server.data_dir / "serve.json").read_text())
    assert record["join_url"] == server.join_url
    assert (server.data_dir / "serve.json").stat().st_mode & 0o077 == 0  # it holds the teacher token


def test_a_new_data_dir_is_private_from_the_start(server):
    # serve makes the data dir itself (the fixture names one that does not exist): 0700, so no warning at start.
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert "other users of this machine" not in server.log_text()


def test_health_reports_the_warm_pool(server):
    health = server.health()
    assert health["ok"] is True and health["pool"]["size"] == 1
    assert set(health["pool"]) == {"size", "started", "warm_count", "warm"}
    health = server.wait_warm(180)
    assert health["pool"] == {"size": 1, "started": 1, "warm_count": 1, "warm": True}
    assert health["warm"] is True


def test_student_page_renders_from_the_warm_pool_with_its_request(server):
    server.wait_warm(180)
    page = server.request(server.join_url)
    assert page.status == 200
    kid = kernel_id(page.text)
    assert f"Using pre-heated kernel: {kid} for student.ipynb" in server.log_text()
    # The pool kernel ran the notebook before the request, then received the request's query string.
    assert f"class {server.class_id}" in page.text
    assert "got" not in page.text and "IntSliderModel" not in page.text  # widget state travels over comms


def test_an_exhausted_pool_falls_back_to_a_cold_kernel(server):
    server.wait_warm(180)
    with ThreadPoolExecutor(2) as pool:
        pages = list(pool.map(lambda _: server.request(server.join_url, timeout=240), range(2)))
    assert [p.status for p in pages] == [200, 200]
    assert all(f"class {server.class_id}" in p.text for p in pages)
    kids = [kernel_id(p.text) for p in pages]
    log = server.log_text()
    from_pool = [k for k in kids if f"Using pre-heated kernel: {k}" in log]
    assert len(from_pool) == 1, "one page takes the pool kernel, the other a cold kernel, none waits on the pool"
    server.wait_warm(180)
    for kid in kids:
        assert server.shutdown_kernel(kid) == 204


def test_class_arrival_measures_pages_against_the_pool(server):
    server.wait_warm(180)
    figure = class_arrival(server, 1)
    assert figure["students"] == 1 and figure["failed"] == 0
    assert 0 < figure["p50_s"] <= figure["max_s"] <= figure["wall_s"] + 0.01


def test_restart_reopens_the_same_default_class(tmp_path, dashboards):
    with running_server(tmp_path, pool_size=0, dashboards=dashboards) as first:
        class_id, join_code = first.class_id, first.join_code
    with running_server(tmp_path, pool_size=0, dashboards=dashboards) as second:
        assert (second.class_id, second.join_code) == (class_id, join_code)
        assert second.request(second.teacher_url).status == 200


def test_missing_dashboards_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "smartsession", "serve", "--dashboards", str(tmp_path / "nowhere"),
         "--data-dir", str(tmp_path / "data"), "--port", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "pass --dashboards DIR" in result.stderr + result.stdout


def test_pool_fills_then_warms_and_a_lan_address_keeps_kernels_reaching_the_server(tmp_path, dashboards):
    # 127.0.0.2 stands in for a classroom address: the pool kernels' handshake must go there, not to 127.0.0.1.
    with running_server(tmp_path, pool_size=1, dashboards=dashboards, host="127.0.0.2") as srv:
        assert srv.url.startswith("http://127.0.0.2:")
        # Health answers at once; the pool kernel is still importing (the fixture page sleeps 2 s first).
        filling = srv.health()
        assert filling["ok"] is True and filling["warm"] is False
        assert filling["pool"]["size"] == 1 and filling["pool"]["warm_count"] == 0
        warm = srv.wait_warm(180)
        assert warm["pool"] == {"size": 1, "started": 1, "warm_count": 1, "warm": True}
        page = srv.request(srv.join_url)
        assert page.status == 200 and f"class {srv.class_id}" in page.text
        assert f"Using pre-heated kernel: {kernel_id(page.text)}" in srv.log_text()
        # Voila's handshake channel hands out page requests (join codes included): this machine only.
        port = int(srv.url.rsplit(":", 1)[1].rstrip("/"))
        query = f"ws://127.0.0.2:{port}/voila/query/{uuid.uuid4()}"
        stranger = socket.create_connection(("127.0.0.2", port), source_address=("127.0.0.3", 0))
        with pytest.raises(InvalidStatus) as refused:
            with connect(query, sock=stranger, open_timeout=10):
                pass
        assert refused.value.response.status_code == 403
        with connect(query, open_timeout=10):
            pass  # this machine may open it


def test_a_taken_port_is_a_clear_error(tmp_path, dashboards):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "smartsession", "serve", "--port", str(port), "--pool-size", "0",
             "--data-dir", str(tmp_path / "data"), "--dashboards", str(dashboards)],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 1
    assert "pick another --port" in result.stderr
    # One line that says what to do, no traceback after it.
    output = result.stdout + result.stderr
    assert "Traceback" not in output and len(result.stderr.strip().splitlines()) <= 2, output


def test_closing_the_tab_shuts_its_kernel_down(server):
    # What Voila's page sends on beforeunload: a beacon with a form field _xsrf read from the page's cookie.
    server.wait_warm(180)
    with urllib.request.urlopen(server.join_url, timeout=60) as page:
        cookies = page.headers.get_all("Set-Cookie")
        kid = kernel_id(page.read().decode())
    xsrf = next(c for c in cookies if c.startswith("_xsrf=")).split(";")[0].split("=", 1)[1]
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="_xsrf"\r\n\r\n{xsrf}\r\n--{boundary}--\r\n').encode()
    headers = {"Cookie": f"_xsrf={xsrf}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert server.request(f"voila/api/shutdown/{kid}", "POST", body, headers).status == 204
    assert f"Kernel shutdown: {kid}" in server.log_text() or server.shutdown_kernel(kid) == 404
