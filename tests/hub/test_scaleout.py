"""The scale-out deployment with real servers: hub nodes on one PostgreSQL database and one Redis, nginx in front
(deploy/nginx/smartsession.conf). One class across nodes, reports from any node, a node killed mid-lesson and the
database restarted mid-lesson, with every acknowledged state stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from smartsession.hub.client import StudentPublisher, TeacherSubscriber, join_class
from testkit.processes import HubProcess, Nginx, PostgresServer, RedisServer
from smartsession.report.build import load_session
from smartsession.schema import StateMessage

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "smartsession.conf"


def get_json(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def stored(store_url: str, class_id: str) -> dict[str, list[int]]:
    """Each student's stored seqs, in order, straight from the database (duplicates would show)."""
    with psycopg.connect(store_url) as conn:
        rows = conn.execute("SELECT student_id, seq FROM states WHERE class_id = %s ORDER BY seq",
                            (class_id,)).fetchall()
    out: dict[str, list[int]] = {}
    for student_id, seq in rows:
        out.setdefault(student_id, []).append(seq)
    return out


async def lesson(publishers, seconds: float, hz: float = 5.0, during=None) -> dict[str, list[int]]:
    """Every publisher sends ``hz`` states a second for ``seconds``; ``during()`` runs halfway. Returns the
    seqs each one published."""
    sent = {p.student_id: [] for p in publishers}
    start = time.monotonic()
    halfway = False
    while time.monotonic() - start < seconds:
        for p in publishers:
            sent[p.student_id].append(p.publish(StateMessage("", "", 0, time.time(), "focused", 70.0, 0.9)).seq)
        if during is not None and not halfway and time.monotonic() - start > seconds / 2:
            halfway = True
            await asyncio.get_running_loop().run_in_executor(None, during)
        await asyncio.sleep(1 / hz)
    return sent


async def all_acked(publishers, sent, timeout: float = 120) -> None:
    for p in publishers:
        await p.wait_acked(sent[p.student_id][-1], timeout)


def test_students_on_two_nodes_and_a_teacher_on_a_third_see_one_class(tmp_path, redis_binary, pg_url, kit):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        a, b, c = (stack.enter_context(HubProcess(tmp_path / n, redis_url=redis.url, store_url=pg_url))
                   for n in "abc")
        assert a.admin_token == b.admin_token == c.admin_token  # shared through the database
        info = a.create_class("Spread out")
        # Joined on any node (the join code comes from the shared secret), connected to A or B.
        joined = [join_class(node.url, info["class_id"], info["join_code"], f"Student {i}")
                  for i, node in enumerate([a, b, c, a])]
        homes = [a, b, a, b]

        async def main():
            events = []
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=c.url,
                                         on_event=events.append) as teacher:
                await teacher.wait_snapshot(30)
                pubs = [StudentPublisher(info["class_id"], j["student_id"], j["token"], url=home.url,
                                         outbox_size=1000) for j, home in zip(joined, homes)]
                for p in pubs:
                    await p.start()
                try:
                    for p in pubs:
                        await p.wait_connected(30)
                    sent = await lesson(pubs, 3)
                    await all_acked(pubs, sent)
                    seen = lambda: {(e["student_id"], e["seq"]) for e in events if e["type"] == "state"}  # noqa: E731
                    want = {(sid, seq) for sid, seqs in sent.items() for seq in seqs}
                    await kit.eventually(lambda: seen() >= want)
                    assert seen() >= want  # the teacher on C got every state live, from both nodes
                    return sent, pubs[0].status["session_id"]
                finally:
                    for p in pubs:
                        await p.stop()

        sent, session_id = asyncio.run(asyncio.wait_for(main(), 240))
        assert stored(pg_url, info["class_id"]) == sent  # each state once, whichever node took it
        for node in (a, b, c):  # the report's data and the history are complete from every node
            doc = get_json(f"{node.url}/smartsession/api/sessions/{session_id}/export.json", info["teacher_token"])
            got: dict[str, list[int]] = {}
            for s in doc["states"]:
                got.setdefault(s["student_id"], []).append(s["seq"])
            assert {k: sorted(v) for k, v in got.items()} == sent, node.url
            history = get_json(f"{node.url}/smartsession/api/sessions/{session_id}/history", info["teacher_token"])
            assert set(history["students"]) == set(sent)
        # `smartsession report --store URL` reads the same shared store.
        with load_session(pg_url, session_id) as data:
            assert len(data.store.states(session_id)) == sum(map(len, sent.values()))
            assert set(data.students.student_id) == set(sent)


def test_students_arriving_on_two_nodes_at_once_open_one_session(tmp_path, redis_binary, pg_url):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        a, b = (stack.enter_context(HubProcess(tmp_path / n, redis_url=redis.url, store_url=pg_url)) for n in "ab")
        info = a.create_class("Two doors")
        joined = [join_class(a.url, info["class_id"], info["join_code"], f"Student {i}") for i in range(6)]

        async def main():
            # No session is open: the first arrivals on each node open one implicitly, at the same moment.
            pubs = [StudentPublisher(info["class_id"], j["student_id"], j["token"], url=node.url, outbox_size=1000)
                    for j, node in zip(joined, [a, b] * 3)]
            await asyncio.gather(*(p.start() for p in pubs))
            try:
                await asyncio.gather(*(p.wait_connected(30) for p in pubs))
                sent = await lesson(pubs, 2)
                await all_acked(pubs, sent)
                return sent, {p.status["session_id"] for p in pubs}
            finally:
                for p in pubs:
                    await p.stop()

        sent, sessions = asyncio.run(asyncio.wait_for(main(), 120))
        assert len(sessions) == 1 and None not in sessions, sessions
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT session_id FROM sessions WHERE class_id = %s", (info["class_id"],)).fetchall()
            in_states = conn.execute("SELECT DISTINCT session_id FROM states WHERE class_id = %s",
                                     (info["class_id"],)).fetchall()
        assert rows == in_states == [(sessions.pop(),)]
        assert stored(pg_url, info["class_id"]) == sent


def test_a_session_ended_by_a_teacher_on_another_node_stays_ended(tmp_path, redis_binary, pg_url, kit):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        a = stack.enter_context(HubProcess(tmp_path / "a", redis_url=redis.url, store_url=pg_url))
        # The teacher's node commits its writes late: the end is still queued there when A opens the next session.
        b = stack.enter_context(HubProcess(tmp_path / "b", redis_url=redis.url, store_url=pg_url,
                                           args=("--HubConfig.commit_interval=3",)))
        info = a.create_class("Ended elsewhere")
        joined = [join_class(a.url, info["class_id"], info["join_code"], f"Student {i}") for i in range(3)]

        async def main():
            pubs = [StudentPublisher(info["class_id"], j["student_id"], j["token"], url=a.url, outbox_size=1000)
                    for j in joined]
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=b.url) as teacher:
                await teacher.wait_snapshot(30)
                for p in pubs:
                    await p.start()
                try:
                    await asyncio.gather(*(p.wait_connected(30) for p in pubs))
                    await kit.eventually(lambda: all(p.status.get("session_id") for p in pubs))
                    first = pubs[0].status["session_id"]
                    await all_acked(pubs, await lesson(pubs, 1))
                    # The teacher on B ends it; a student joining anew on A opens the next lesson's session.
                    await teacher.send_command("end_session")
                    await kit.eventually(lambda: pubs[0].status.get("ended"))
                    late = await asyncio.get_running_loop().run_in_executor(
                        None, join_class, a.url, info["class_id"], info["join_code"], "Late")
                    newcomer = StudentPublisher(info["class_id"], late["student_id"], late["token"], url=a.url)
                    pubs.append(newcomer)
                    await newcomer.start()
                    await newcomer.wait_connected(30)
                    await kit.eventually(lambda: newcomer.status.get("session_id") is not None)
                    second = newcomer.status["session_id"]
                    await kit.eventually(lambda: teacher.room.session_id == second)
                    return first, second
                finally:
                    for p in pubs:
                        await p.stop()

        first, second = asyncio.run(asyncio.wait_for(main(), 120))
        assert second != first
        time.sleep(3.5)  # B's end commits
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT session_id, ended IS NULL FROM sessions WHERE class_id = %s ORDER BY started",
                                (info["class_id"],)).fetchall()
        assert rows == [(first, False), (second, True)]


def test_a_student_joining_anew_through_nginx_opens_the_next_lesson(tmp_path, redis_binary, nginx_binary, pg_url,
                                                                    kit):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        nodes = [stack.enter_context(HubProcess(tmp_path / n, redis_url=redis.url, store_url=pg_url)) for n in "ab"]
        lb = stack.enter_context(Nginx(SITE, [f"127.0.0.1:{n.port}" for n in nodes], binary=nginx_binary))
        # Several classes, so some hash to each node: the join must reach the node the student connects to.
        classes = [nodes[0].create_class(f"Class {i}") for i in range(4)]

        async def next_lesson(info):
            first = join_class(lb.url, info["class_id"], info["join_code"], "First")
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=lb.url) as teacher, \
                    StudentPublisher(info["class_id"], first["student_id"], first["token"], url=lb.url) as pub:
                await teacher.wait_snapshot(30)
                await kit.eventually(lambda: pub.status.get("session_id") is not None)
                await teacher.send_command("end_session")
                await kit.eventually(lambda: pub.status.get("ended"))
                late = join_class(lb.url, info["class_id"], info["join_code"], "Late")
                async with StudentPublisher(info["class_id"], late["student_id"], late["token"], url=lb.url) as new:
                    await kit.eventually(lambda: new.status.get("session_id") is not None, 10)
                    return new.status

        for info in classes:
            status = asyncio.run(asyncio.wait_for(next_lesson(info), 60))
            assert status["session_id"] and not status.get("ended"), (info["class_id"], status)


def test_a_node_killed_mid_lesson_its_students_fail_over_and_nothing_acknowledged_is_lost(
        tmp_path, redis_binary, nginx_binary, pg_url, kit):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        nodes = [stack.enter_context(HubProcess(tmp_path / n, redis_url=redis.url, store_url=pg_url))
                 for n in "ab"]
        lb = stack.enter_context(Nginx(SITE, [f"127.0.0.1:{n.port}" for n in nodes], binary=nginx_binary))
        info = nodes[0].create_class("Failover")
        joined = [join_class(lb.url, info["class_id"], info["join_code"], f"Student {i}") for i in range(4)]
        victim = []

        def kill_the_class_node():
            # nginx sends a class to one node: the one with students is the one to kill.
            [home] = [n for n in nodes if n.health()["students"] == 4]
            victim.append(home)
            home.kill()

        async def main():
            events = []
            # The teacher goes through nginx too: to the same node, killed with it, and back on the survivor.
            teacher = TeacherSubscriber(info["class_id"], info["teacher_token"], url=lb.url, on_event=events.append,
                                        backoff=(0.2, 1.0))
            await teacher.start()
            pubs = [StudentPublisher(info["class_id"], j["student_id"], j["token"], url=lb.url, outbox_size=1000,
                                     backoff=(0.2, 1.0)) for j in joined]
            for p in pubs:
                await p.start()
            try:
                await teacher.wait_snapshot(30)
                for p in pubs:
                    await p.wait_connected(30)
                sent = await lesson(pubs, 6, during=kill_the_class_node)
                await all_acked(pubs, sent)
                last = {sid: seqs[-1] for sid, seqs in sent.items()}
                def seen():
                    latest = {}
                    for e in events:
                        if e["type"] == "state":
                            latest[e["student_id"]] = max(latest.get(e["student_id"], -1), e["seq"])
                    return latest

                await kit.eventually(lambda: seen() == last, 60)
                assert seen() == last  # the teacher follows the class onto the surviving node
                return sent
            finally:
                for p in pubs:
                    await p.stop()
                await teacher.stop()

        sent = asyncio.run(asyncio.wait_for(main(), 240))
        [survivor] = [n for n in nodes if n is not victim[0]]
        assert survivor.health()["ok"]
        # Everything published is acknowledged (by the dead node or, resent, by the survivor) and stored once.
        assert stored(pg_url, info["class_id"]) == sent


def test_a_database_restart_mid_lesson_holds_acks_then_stores_everything(tmp_path, redis_binary, postgres):
    with ExitStack() as stack:
        database = stack.enter_context(PostgresServer(postgres.bindir))
        redis = stack.enter_context(RedisServer(redis_binary))
        a, b = (stack.enter_context(HubProcess(tmp_path / n, redis_url=redis.url, store_url=database.url))
                for n in "ab")
        info = a.create_class("Outage")
        joined = [join_class(a.url, info["class_id"], info["join_code"], f"Student {i}") for i in range(4)]

        def restart():
            database.stop()
            time.sleep(2)
            database.start()

        async def main():
            events = []
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=b.url,
                                         on_event=events.append) as teacher:
                await teacher.wait_snapshot(30)
                pubs = [StudentPublisher(info["class_id"], j["student_id"], j["token"], url=(a, b)[i % 2].url,
                                         outbox_size=1000) for i, j in enumerate(joined)]
                for p in pubs:
                    await p.start()
                try:
                    for p in pubs:
                        await p.wait_connected(30)
                    sent = await lesson(pubs, 6, during=restart)
                    await all_acked(pubs, sent)
                    # The class ran on during the outage: the teacher saw every state live.
                    live = {(e["student_id"], e["seq"]) for e in events if e["type"] == "state"}
                    assert live >= {(sid, seq) for sid, seqs in sent.items() for seq in seqs}
                    return sent
                finally:
                    for p in pubs:
                        await p.stop()

        sent = asyncio.run(asyncio.wait_for(main(), 240))
        assert stored(database.url, info["class_id"]) == sent
        logs = (tmp_path / "a" / "hub.log").read_text() + (tmp_path / "b" / "hub.log").read_text()
        assert "PostgreSQL unreachable" in logs and "PostgreSQL is back" in logs


def test_a_redis_restart_mid_lesson_drops_only_live_relays_then_the_class_is_shared_again(
        tmp_path, redis_binary, pg_url, kit):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        a, b = (stack.enter_context(HubProcess(tmp_path / n, redis_url=redis.url, store_url=pg_url)) for n in "ab")
        info = a.create_class("Redis outage")
        joined = [join_class(a.url, info["class_id"], info["join_code"], f"Student {i}") for i in range(2)]

        def restart():
            redis.stop()
            time.sleep(2)
            redis.start()

        async def main():
            events = []
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=b.url,
                                         on_event=events.append) as teacher:
                await teacher.wait_snapshot(30)
                pubs = [StudentPublisher(info["class_id"], j["student_id"], j["token"], url=a.url, outbox_size=1000)
                        for j in joined]
                for p in pubs:
                    await p.start()
                try:
                    for p in pubs:
                        await p.wait_connected(30)
                    sent = await lesson(pubs, 6, during=restart)
                    await all_acked(pubs, sent)  # node A went on storing and acknowledging throughout
                    # Once Redis is back for both (each retries on its own clock), A's students reach the
                    # teacher on B again.
                    back = lambda n: "Redis is back" in (tmp_path / n / "hub.log").read_text()  # noqa: E731
                    await kit.eventually(lambda: back("a") and back("b"), 60)
                    after = [p.publish(StateMessage("", "", 0, time.time(), "focused", 10.0, 0.9)).seq for p in pubs]
                    for p, seq in zip(pubs, after):
                        sent[p.student_id].append(seq)
                    live = lambda: {e["seq"] for e in events if e["type"] == "state"}  # noqa: E731
                    await kit.eventually(lambda: set(after) <= live(), 60)
                    assert set(after) <= live()
                    await all_acked(pubs, sent)
                    return sent
                finally:
                    for p in pubs:
                        await p.stop()

        sent = asyncio.run(asyncio.wait_for(main(), 240))
        assert stored(pg_url, info["class_id"]) == sent
        logs = (tmp_path / "a" / "hub.log").read_text() + (tmp_path / "b" / "hub.log").read_text()
        assert "Redis unreachable" in logs and "Redis is back" in logs


def test_serve_nodes_behind_nginx_share_classes_and_pin_a_class_page_to_one_node(
        tmp_path, redis_binary, nginx_binary, pg_url):
    from testkit.serving import running_server

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(redis_binary))
        a, b = (stack.enter_context(running_server(tmp_path / n, pool_size=0, timeout=240, store=pg_url,
                                                   redis_url=redis.url)) for n in "ab")
        ports = [urlsplit(srv.url).port for srv in (a, b)]
        lb = stack.enter_context(Nginx(SITE, [f"127.0.0.1:{port}" for port in ports], binary=nginx_binary))
        # Node B authorises node A's class: the secret, the admin token and the class are in the shared store.
        assert a.admin_token == b.admin_token
        assert a.class_id == b.class_id  # one default class for the deployment, not one per node
        assert isinstance(get_json(f"{b.url}smartsession/api/classes/{a.class_id}/sessions", a.teacher_token), list)
        # Through nginx, the teacher page of A's class renders and pins the browser's later requests
        # (its kernel's) to the node that rendered it.
        with urllib.request.urlopen(lb.url + "/" + a.teacher_url.split("/", 3)[3], timeout=240) as page:
            assert page.status == 200
            cookies = page.headers.get_all("Set-Cookie")
        assert f"smartsession_class={a.class_id}; Path=/; HttpOnly; SameSite=Lax" in cookies
