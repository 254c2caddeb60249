"""The reference deployment with a real browser: two `smartsession serve` nodes on one PostgreSQL and one Redis,
nginx in front with deploy/nginx/smartsession.conf. A teacher and a student open their pages through nginx only;
the class's pages, their kernels' websockets and the hub must all land on one node (the class's), the teacher
must see the student live, and the student's states must be in the shared store.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from testkit.processes import Nginx, PostgresServer, RedisServer
from testkit.serving import running_server

from .test_classroom import LIVE, PAGE_TIMEOUT_MS, card_of, wait_attr

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "smartsession.conf"


def through(proxy: Nginx, url: str) -> str:
    """``url`` of a node, asked of nginx instead."""
    parts = urlsplit(url)
    return proxy.url + parts.path + (f"?{parts.query}" if parts.query else "")


def kernels_used(log: str) -> int:
    """How many kernels a node's log shows started or handed to a page (logged at INFO)."""
    return sum("Kernel started" in line or "Using pre-heated kernel" in line for line in log.splitlines())


def past(proxy: Nginx, page) -> list[str]:
    """Collect every request the page makes to anything but nginx (there must be none)."""
    elsewhere: list[str] = []

    def check(request):
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and not request.url.startswith(
                (proxy.url + "/", proxy.url.replace("http", "ws", 1) + "/")):
            elsewhere.append(request.url)

    page.on("request", check)
    return elsewhere


def test_a_class_behind_nginx_stays_on_one_node_and_is_stored_once(browser, tmp_path, screenshot):
    with ExitStack() as stack:
        pg = stack.enter_context(PostgresServer())
        redis = stack.enter_context(RedisServer())
        shared = {"store": pg.url, "redis_url": redis.url}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = stack.enter_context(running_server(tmp_path / "a", **shared))
        b = stack.enter_context(running_server(tmp_path / "b", **shared))
        proxy = stack.enter_context(Nginx(SITE, [urlsplit(a.url).netloc, urlsplit(b.url).netloc]))
        a.wait_warm(180)
        b.wait_warm(180)
        nodes = {"a": a, "b": b}
        before = {name: kernels_used(node.log_text()) for name, node in nodes.items()}

        # The teacher of node a's class, through nginx.
        teacher_context = browser.new_context(viewport={"width": 1280, "height": 1000})
        teacher = teacher_context.new_page()
        outside = past(proxy, teacher)
        teacher.goto(through(proxy, a.teacher_url), timeout=PAGE_TIMEOUT_MS)
        teacher.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
        join = teacher.locator(".ss-join a")
        join.wait_for(timeout=30_000)
        link = join.get_attribute("data-join")
        assert link.startswith(proxy.url + "/"), f"the join link must name the address the teacher used: {link}"

        student_context = browser.new_context(viewport={"width": 1100, "height": 800})
        student = student_context.new_page()
        outside += past(proxy, student)
        student.goto(link, timeout=PAGE_TIMEOUT_MS)
        student.get_by_placeholder("as your teacher will see it").fill("Grace Hopper")
        student.get_by_role("button", name="I agree, start my camera").click()
        card = card_of(teacher, "Grace Hopper")
        sid = card.get_attribute("data-student")
        wait_attr(teacher, sid, "presence", ("connected",), 60_000)
        teacher.wait_for_function(
            """(sid) => {
                const c = document.querySelector(`.ss-card[data-student="${sid}"]`);
                return c && c.dataset.engagement !== "" && c.dataset.state !== "";
            }""",
            arg=sid,
            timeout=60_000,
        )
        screenshot(teacher, "teacher-behind-nginx")

        # Both pages' kernels were opened on one node: the one nginx picked for the class.
        opened = {name: kernels_used(node.log_text()) - before[name] for name, node in nodes.items()}
        print("kernels used per node after the pages opened:", opened)
        assert sorted(opened.values())[0] == 0 and sorted(opened.values())[1] >= 2, (
            f"the class's kernel websockets went to both nodes: {opened}\n--- a\n{a.log_tail()}\n--- b\n{b.log_tail()}")

        # The teacher sees a state as soon as the hub has it; the store commits it a moment later.
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(pg.url) as conn:
                rows = conn.execute("SELECT count(*), count(DISTINCT seq) FROM states WHERE class_id = %s AND "
                                    "student_id = %s", (a.class_id, sid)).fetchone()
            if rows[0] > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rows[0] > 0 and rows[0] == rows[1], f"states of the student in PostgreSQL (all, distinct): {rows}"
        assert outside == [], f"the pages reached past nginx: {outside}"
        student_context.close()
        teacher_context.close()
