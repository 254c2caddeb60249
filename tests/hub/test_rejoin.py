"""A reloaded student page joins again as the same student (issue 21): the seat token ``smartsession serve`` gives
each page's kernel names the student, so the hub's join keeps the id, renames, and counts no new student.

A real hub on 127.0.0.1 with real sockets; the seat tokens are what serve mints (``auth.seat_token``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from smartsession.hub import auth
from smartsession.hub.protocol import CloseCode
from smartsession.hub.standalone import running_hub


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/smartsession/api/join", data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def join(url: str, body: dict) -> tuple[int, dict]:
    return await asyncio.get_running_loop().run_in_executor(None, post, url, body)


def test_a_seat_joins_once_as_a_new_student_then_rejoins_as_the_same_one(tmp_path, kit):
    async def main():
        # Two students at most: a reload of either must still get in, and count as neither a third nor a join.
        async with running_hub(data_dir=tmp_path, max_students_per_class=2, join_burst_per_class=2.0,
                               join_rate_per_class=0.001) as (hub, url):
            info = hub.create_class("Reloads")
            cid = info["class_id"]
            seat = auth.seat_token(hub.secret, cid, auth.new_student_id())
            body = {"class_id": cid, "join_code": info["join_code"], "name": "Ada", "seat": seat}
            status, first = await join(url, body)
            assert status == 200 and first["student_id"] == auth.seat_student(hub.secret, seat, cid)
            ws, snap = await kit.teacher(url, info)
            ada = await kit.connect(url, f"/smartsession/ws/student/{cid}/{first['student_id']}")
            assert (await kit.hello(ada, first["token"]))["type"] == "welcome"
            await ada.send(kit.state(first, 1))
            await kit.until(ws, lambda m: m.get("type") == "state" and m["student_id"] == first["student_id"])
            status, bob = await join(url, {**body, "name": "Bob", "seat": None})  # the class's second student
            assert status == 200 and bob["student_id"] != first["student_id"]

            # The page reloads: its new kernel joins with the same seat (serve mints a fresh token for the same
            # id) and a name typed anew. The class is full and its join budget spent, yet Ada is back.
            again = auth.seat_token(hub.secret, cid, first["student_id"])
            status, second = await join(url, {**body, "seat": again, "name": "Ada L."})
            assert status == 200, second
            assert second["student_id"] == first["student_id"] and second["token"] != first["token"]
            renamed = await kit.until(ws, lambda m: m.get("type") == "student")
            assert (renamed["student_id"], renamed["name"]) == (first["student_id"], "Ada L.")
            # The new kernel's socket takes the old one's place; its states continue Ada's, on one card.
            new = await kit.connect(url, f"/smartsession/ws/student/{cid}/{first['student_id']}")
            welcome = await kit.hello(new, second["token"])
            assert welcome["type"] == "welcome" and welcome["last_seq"] == 1 and welcome["name"] == "Ada L."
            assert (await kit.closed_with(ada))[0] == CloseCode.REPLACED
            await new.send(kit.state(second, 2))
            await kit.until(ws, lambda m: m.get("type") == "state" and m["seq"] == 2)
            _, snap = await kit.teacher(url, info)
            cards = {s["student_id"]: s for s in snap["students"]}
            assert set(cards) <= {first["student_id"], bob["student_id"]}  # Bob joined, never connected
            assert cards[first["student_id"]]["presence"] == "connected"
            assert cards[first["student_id"]]["name"] == "Ada L."
            assert hub.class_sizes[cid] == 2 and hub.store.count_students(cid) == 2
            # The same name again is no rename.
            status, _ = await join(url, {**body, "seat": again, "name": "Ada L."})
            assert status == 200

            # Nobody else gets a student's place: a newcomer is refused (the class is full), a made-up, altered
            # or other class's seat is refused, and neither a student token nor a seat token stands for the other.
            assert (await join(url, {**body, "seat": None, "name": "Eve"}))[0] == 503
            other = hub.create_class("Other")
            for forged in (auth.seat_token("another-secret", cid, first["student_id"]), again[:-2] + "AA",
                           auth.seat_token(hub.secret, other["class_id"], first["student_id"]),
                           second["token"], "x" * 40, 7):
                status, refused = await join(url, {**body, "seat": forged, "name": "Eve"})
                assert status == 403, (forged, refused)
            eve = await kit.connect(url, f"/smartsession/ws/student/{cid}/{first['student_id']}")
            await eve.send(json.dumps({"type": "hello", "v": 1, "token": again}))
            assert (await kit.closed_with(eve))[0] == CloseCode.AUTH_FAILED
            assert hub.store.count_students(cid) == 2
            for sock in (ws, new):
                await sock.close()

    run(main())


def test_whether_a_seat_joined_is_read_from_any_node_of_a_shared_store(pg_url):
    # The rejoin asks the store whether the seat's student joined: with PostgreSQL, what any node committed.
    from smartsession.hub.pgstore import PostgresStore

    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        a.add_student("c1", "s1", "Ada")
        a.update_student("c1", "s2", "Bob", True)
        a.flush()
        assert b.class_student("c1", "s1") == ("Ada", False) and b.class_student("c1", "s2") == ("Bob", True)
        assert b.class_student("c1", "s3") is None and b.class_student("c2", "s1") is None
