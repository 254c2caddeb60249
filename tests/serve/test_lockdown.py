"""What an anonymous client can reach on a real `smartsession serve`: no listing, no code, no class data.

Every HTTP and websocket endpoint a curious student could try, the teacher page's token check, the kernel
channel filter on a real kernel, tokens kept out of the log, and pages that name no outside host.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from testkit.serving import kernel_id

from servekit import SECRET_MARKERS, kernel_message, widget_models

# Fixed, so that every test worker collects the same parametrised ids; no kernel ever has it.
FAKE_KERNEL = "00000000-5eed-4000-8000-000000000000"

#: (method, path): answered with anything but a listing, code execution or class data.
HTTP_PROBES = [
    ("GET", "tree"),
    ("GET", "tree/"),
    ("GET", "lab"),
    ("GET", "lab/tree/student.ipynb"),
    ("GET", "notebooks/student.ipynb"),
    ("GET", "edit/student.ipynb"),
    ("GET", "view/student.ipynb"),
    ("GET", "voila"),
    ("GET", "voila/"),
    ("GET", "voila/tree"),
    ("GET", "voila/tree/"),
    ("GET", "voila/tree/secret.ipynb"),
    ("GET", "voila/api/contents"),
    ("GET", "voila/api/contents/secret.ipynb"),
    ("GET", "voila/render/secret.ipynb"),
    ("GET", "voila/render/../secret.ipynb"),
    ("GET", "voila/render/%2e%2e/secret.ipynb"),
    ("GET", "voila/files/secret.ipynb"),
    ("GET", "voila/files/student.ipynb"),
    ("GET", "voila/static/../../secret.ipynb"),
    ("GET", "voila/templates/lab/static/../../../secret.ipynb"),
    ("GET", "api"),
    ("GET", "api/contents"),
    ("GET", "api/contents/secret.ipynb"),
    ("PUT", "api/contents/new.ipynb"),
    ("GET", "api/kernels"),
    ("POST", "api/kernels"),
    ("GET", f"api/kernels/{FAKE_KERNEL}"),
    ("POST", f"api/kernels/{FAKE_KERNEL}/interrupt"),
    ("POST", f"api/kernels/{FAKE_KERNEL}/restart"),
    ("GET", "api/kernelspecs"),
    ("GET", "api/sessions"),
    ("POST", "api/sessions"),
    ("GET", "api/terminals"),
    ("POST", "api/terminals"),
    ("GET", "terminals/1"),
    ("GET", "api/nbconvert"),
    ("GET", "nbconvert/html/student.ipynb"),
    ("GET", "files/secret.ipynb"),
    ("GET", "api/config/notebook"),
    ("GET", "api/me"),
    ("GET", "api/status"),
    ("GET", "login"),
    ("POST", f"voila/api/shutdown/{FAKE_KERNEL}"),
    ("GET", "smartsession/api/classes"),
    ("POST", "smartsession/api/classes"),
    ("GET", "smartsession/api/classes/{class_id}/sessions"),
    ("GET", "smartsession/api/sessions/x1/export.csv"),
    ("GET", "smartsession/api/sessions/x1/history"),
    ("GET", "voila/render/student.ipynb"),
    ("GET", "voila/render/student.ipynb?class={class_id}"),
    ("GET", "voila/render/student.ipynb?class={class_id}&join=wrongcode"),
    ("GET", "voila/render/teacher.ipynb"),
    ("GET", "voila/render/teacher.ipynb?class={class_id}"),
    ("GET", "voila/render/teacher.ipynb?class={class_id}&token=forged.token"),
    ("GET", "voila/render/teacher.ipynb?class={class_id}&token={join_code}"),
]


def assert_reveals_nothing(server, what: str, status: int, body: str) -> None:
    for marker in (*SECRET_MARKERS, server.class_id, server.teacher_token, server.join_code, server.title):
        assert marker not in body, f"{what} ({status}) reveals {marker!r}"
    assert "kernel_id" not in body and '"kernelId"' not in body, f"{what} ({status}) reveals a kernel"


@pytest.mark.parametrize("method,path", HTTP_PROBES, ids=[f"{m} {p}" for m, p in HTTP_PROBES])
def test_anonymous_http_probe_gets_no_listing_code_or_class_data(server, method, path):
    path = path.format(class_id=server.class_id, join_code=server.join_code)
    body = b"{}" if method in ("POST", "PUT") else None
    server.wait_warm(180)  # no pool kernel still starting, so any "Kernel started" below is the probe's
    started = server.log_text().count("Kernel started")
    r = server.request(path, method, body, {"Content-Type": "application/json"})
    assert r.status in (301, 302, 400, 401, 403, 404, 405), f"{method} {path} answered {r.status}: {r.text[:300]}"
    assert_reveals_nothing(server, f"{method} {path}", r.status, r.text)
    assert server.log_text().count("Kernel started") == started, f"{method} {path} started a kernel"


def test_the_landing_page_lists_nothing(server):
    r = server.request("")
    assert r.status == 200 and "join link" in r.text
    assert_reveals_nothing(server, "/", r.status, r.text)
    assert "student.ipynb" not in r.text and "teacher.ipynb" not in r.text


def ws_url(server, path: str) -> str:
    return server.url.replace("http", "ws", 1) + path


@pytest.mark.parametrize(
    "path",
    [
        f"api/kernels/{FAKE_KERNEL}/channels",
        "terminals/websocket/1",
        "api/events/subscribe",
        "api/yjs/roomid",
        "voila/render/student.ipynb",
    ],
)
def test_anonymous_websockets_are_refused(server, path):
    with pytest.raises(InvalidStatus) as refused:
        with connect(ws_url(server, path), open_timeout=10):
            pass
    assert refused.value.response.status_code in (400, 403, 404, 405)


def test_hub_websockets_without_a_token_show_nothing(server):
    for path in (f"smartsession/ws/teacher/{server.class_id}", f"smartsession/ws/student/{server.class_id}/s1"):
        with connect(ws_url(server, path), open_timeout=10) as ws:
            ws.send(json.dumps({"type": "hello", "token": "forged.token"}))
            received = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received.append(ws.recv(timeout=15))
            assert closed.value.rcvd is not None and closed.value.rcvd.code >= 4000
            for text in received:
                assert_reveals_nothing(server, path, 101, text)


def test_teacher_page_needs_the_teacher_token_of_its_class(server):
    other = server.create_class("Other class")
    refused = [
        f"voila/render/teacher.ipynb?class={server.class_id}",
        f"voila/render/teacher.ipynb?class={server.class_id}&token={other['teacher_token']}",
        f"voila/render/teacher.ipynb?class={other['class_id']}&token={server.teacher_token}",
        f"voila/render/teacher.ipynb?class={server.class_id}&token={server.teacher_token[:-3]}abc",
    ]
    started = server.log_text().count("Kernel started")
    for path in refused:
        r = server.request(path)
        assert r.status == 403, path
        assert "teacher link" in r.text or "invalid token" in r.text, r.text
    # Refused before Voila ran anything of the class: no kernel was started for them.
    assert server.log_text().count("Kernel started") == started
    ok = server.request(server.teacher_url)
    assert ok.status == 200 and "teacher page rendered" in ok.text
    assert server.request(other["teacher_url"]).status == 200


def test_student_page_needs_the_join_link_of_its_class(server):
    other = server.create_class("Neighbours")
    for path in (
        "voila/render/student.ipynb",
        f"voila/render/student.ipynb?class={server.class_id}&join={other['join_code']}",
        f"voila/render/student.ipynb?class={other['class_id']}&join={server.join_code}",
    ):
        r = server.request(path)
        assert r.status == 403 and "join link" in r.text, path


def test_kernel_channels_pass_widget_traffic_but_never_run_code(server, tmp_path):
    server.wait_warm(180)
    page = server.request(server.join_url)
    assert page.status == 200
    kid = kernel_id(page.text)
    slider, label = widget_models(page.text)
    marker = tmp_path / "code-ran"
    with connect(ws_url(server, f"api/kernels/{kid}/channels"), open_timeout=30, max_size=None) as ws:

        def replies(seconds: float) -> list[dict]:
            out, deadline = [], time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    out.append(json.loads(ws.recv(timeout=left)))
                except TimeoutError:
                    break
            return out

        ws.send(json.dumps(kernel_message("kernel_info_request", {})))
        ws.send(json.dumps(kernel_message("comm_info_request", {"target_name": "jupyter.widget"})))
        types = {m["msg_type"] for m in replies(10)}
        assert {"kernel_info_reply", "comm_info_reply"} <= types

        code = f"open({str(marker)!r}, 'w').write('x'); print('CODE RAN')"
        for msg_type, content in (
            ("execute_request", {"code": code, "silent": False, "store_history": True}),
            ("inspect_request", {"code": "open", "cursor_pos": 4, "detail_level": 1}),
            ("complete_request", {"code": "import o", "cursor_pos": 8}),
            ("history_request", {"hist_access_type": "tail", "n": 10, "output": True, "raw": True}),
            ("is_complete_request", {"code": "x = 1"}),
        ):
            ws.send(json.dumps(kernel_message(msg_type, content)))
        ws.send(json.dumps(kernel_message("execute_request", {"code": code}, channel="control")))
        ws.send(json.dumps(kernel_message("debug_request", {"command": "evaluate"}, channel="control")))
        after = replies(5)
        assert not marker.exists()
        leaked = [m["msg_type"] for m in after if m["msg_type"] not in ("status",)]
        assert leaked == [], f"code-running requests were answered: {leaked}"
        assert "CODE RAN" not in json.dumps(after)

        update = {"method": "update", "state": {"value": 7}, "buffer_paths": []}
        ws.send(json.dumps(kernel_message("comm_msg", {"comm_id": slider, "data": update})))
        echoed = [
            m for m in replies(10)
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == label
        ]
        assert any(m["content"]["data"].get("state", {}).get("value") == "got 7" for m in echoed)
    assert not marker.exists()
    server.shutdown_kernel(kid)


def test_page_tokens_stay_out_of_the_log(server):
    other = server.create_class("Log check")
    assert server.request(other["teacher_url"]).status == 200
    assert server.request(other["join_url"].replace("join=", "join=x")).status == 403
    assert server.request(f"voila/render/teacher.ipynb?class=x&token={other['teacher_token']}").status == 403
    time.sleep(0.5)
    log = server.log_text()
    assert other["teacher_token"] not in log
    assert other["join_code"] not in log
    assert "token=[redacted]" in log


EXTERNAL = re.compile(r"""(?:\b(?:src|href|action)\s*=\s*["']?|url\(\s*["']?|import\(\s*["'])\s*(?:https?:)?//""", re.I)


def test_pages_name_no_outside_host(server):
    server.wait_warm(180)
    pages = {
        "landing": server.request(""),
        "student": server.request(server.join_url),
        "student, cold kernel": server.request(server.join_url),
        "teacher": server.request(server.teacher_url),
        "refusal": server.request("voila/render/teacher.ipynb"),
        "not found": server.request("voila/render/nothing.ipynb"),
        "icons": server.request("smartsession/static/font-awesome/css/font-awesome.min.css"),
    }
    for name, r in pages.items():
        assert r.status in (200, 403, 404), name
        found = [r.text[m.start() : m.start() + 80] for m in EXTERNAL.finditer(r.text)]
        assert not found, f"{name} page references outside hosts: {found}"
        assert "cdn." not in r.text and "cdnjs" not in r.text, name
    assert "smartsession/static/font-awesome/css/font-awesome.min.css" in pages["student"].text
    for font in re.findall(r"url\('\.\./fonts/([^?#']+)", pages["icons"].text):
        assert server.request(f"smartsession/static/font-awesome/fonts/{font}").status == 200, font
    for name in ("student", "student, cold kernel", "teacher"):
        kid = kernel_id(pages[name].text)
        if kid:
            server.shutdown_kernel(kid)


def test_a_link_cannot_pick_the_page_template(server):
    r = server.request(server.teacher_url + "&template=classic")
    assert r.status == 200 and "teacher page rendered" in r.text
    assert 'id="notebook-container"' not in r.text and "jp-Notebook" in r.text
    kid = kernel_id(r.text)
    if kid:
        server.shutdown_kernel(kid)


def test_logout_leads_back_to_the_landing_page(server):
    # Jupyter's own handler answered 500 here (a template that needs a static path standalone Voila lacks).
    import http.client
    from urllib.parse import urlsplit

    before = len(server.log_text())
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", "/logout")
    answer = conn.getresponse()
    assert answer.status == 302 and answer.getheader("Location") == "/"
    conn.close()
    landing = server.request("logout")  # followed
    assert landing.status == 200 and "open the join link your teacher shared" in landing.text
    assert "Traceback" not in server.log_text()[before:]
