"""The teacher's terminal: the banner, then one line per event that matters, and nothing alarming that is not a problem."""

from __future__ import annotations

import json
import re
import time

from websockets.sync.client import connect

from smartsession.serve.pool import PoolStatus
from smartsession.serve.terminal import Terminal
from testkit.serving import kernel_id, running_server

from servekit import kernel_message


def test_the_pool_and_the_class_in_a_few_lines():
    term, t = Terminal(every=10), 1000.0
    said = lambda warm, students: [line.split("  ", 1)[1] for line in term.lines(t, PoolStatus(3, 3, warm), students)]  # noqa: E731
    assert said(1, 0) == []  # still filling: the banner already said how long that takes
    assert said(3, 0) == ["student kernels ready: 3 warm, student pages open at once"]
    assert said(3, 0) == []
    assert said(2, 1) == ["students connected: 1"]
    t += 1
    assert said(0, 5) == ["student kernels all in use: new pages start their own kernel (slower) until refilled"]
    t += 1
    assert said(0, 12) == []  # a class arriving: one count per 10 s, not one line per student
    t += 10
    assert said(3, 12) == ["student kernels ready: 3 warm, student pages open at once", "students connected: 12"]
    assert said(3, 12) == []


def test_serve_says_what_a_teacher_needs_and_nothing_alarming(tmp_path, dashboards):
    with running_server(tmp_path, pool_size=2, dashboards=dashboards, kernel_log=False) as server:
        server.wait_warm(240)
        page = server.request(server.join_url, timeout=240)  # takes a kernel; the pool refills
        assert page.status == 200
        # The page's kernel websocket, as its browser opens it (tornado and jupyter_server both keep it alive).
        channels = server.url.replace("http", "ws", 1) + f"api/kernels/{kernel_id(page.text)}/channels"
        with connect(channels, open_timeout=30) as ws:
            ws.send(json.dumps(kernel_message("kernel_info_request", {})))
            while json.loads(ws.recv(timeout=30))["msg_type"] != "kernel_info_reply":
                pass
            ws.ping().wait(10)
        deadline = time.monotonic() + 120
        while "student kernels ready" not in server.log_text() and time.monotonic() < deadline:
            time.sleep(1)
    log = server.log_text()
    assert server.teacher_url in log and re.search(r"\d\d:\d\d:\d\d  student kernels ready: 2 warm", log), log
    for noise in ("not trusted", "without encryption", "Traceback", "ZMQError", "Kernel started", "connection files",
                  "websocket_ping_timeout", "Ctrl-C will not work", "To connect another client"):
        assert noise not in log, f"{noise!r} on the teacher's terminal:\n{log}"
