"""The backplane trusts nobody who can write to Redis: only batches and room entries sealed with the deployment's
secret are opened, and what opens is checked like a client's message. A forged ``class`` event cannot end a
class, forged states and renames never reach a teacher, a poisoned room entry is skipped on a fresh node, and a
flood of garbage costs each node a few log lines, not ten traceback lines per message.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest
import redis as redis_py

from smartsession.hub.client import StudentPublisher, TeacherSubscriber, join_class
from smartsession.hub.relay import BadRelay, backplane_key, check_event, seal, seal_entry, unseal, unseal_entry
from smartsession.schema import SchemaError, StateBatch, StateMessage
from testkit.processes import HubProcess, RedisServer

KEY = backplane_key("s" * 64)


def a_state(**changes) -> dict:
    event = {**StateMessage("c1", "s1", 3, time.time(), "focused", 70.0, 0.9, {"yaw": 2.0}).to_dict(),
             "received": time.time()}
    return {**event, **changes}


def test_sealed_batches_open_only_with_the_secret_for_their_class_and_while_fresh():
    now = time.time()
    data = seal(KEY, "c1", "hubA", ['{"a":1}', '{"b":2}'], now).encode()
    assert unseal(KEY, "c1", data, now + 1) == ("hubA", ['{"a":1}', '{"b":2}'])
    for key, class_id, at, why in ((backplane_key("other"), "c1", now, "not sealed"),
                                   (KEY, "c2", now, "not sealed"),
                                   (KEY, "c1", now + 3600, "old")):
        with pytest.raises(BadRelay, match=why):
            unseal(key, class_id, data, at)
    with pytest.raises(BadRelay, match="not sealed"):
        unseal(KEY, "c1", data.replace(b'"a":1', b'"a":2'), now)
    with pytest.raises(BadRelay, match="not sealed"):
        unseal(KEY, "c1", b"hubA\n" + json.dumps({"type": "class"}).encode(), now)  # the old, unsealed format
    entry = seal_entry(KEY, "c1", "state:s1", '{"x":1}').encode()
    assert unseal_entry(KEY, "c1", "state:s1", entry) == '{"x":1}'
    with pytest.raises(BadRelay):
        unseal_entry(KEY, "c1", "state:s2", entry)


@pytest.mark.parametrize("bad", [
    {"state": "<b>x</b>"}, {"engagement": 1e308}, {"features": {"yaw": 1e8}}, {"t": float("nan")},
    {"class_id": "c2"}, {"received": "soon"}, {"received": float("inf")}, {"extra": 1}, {"seq": True},
])
def test_a_relayed_state_is_checked_like_a_students(bad):
    assert check_event("c1", a_state(), time.time())["seq"] == 3
    with pytest.raises(SchemaError):
        check_event("c1", a_state(**bad), time.time())


def test_a_batch_crosses_the_backplane_only_as_the_states_a_hub_checked():
    # A hub relays each state of a student's batch as its own state event; a ``states`` event is none a hub makes.
    states = [{k: v for k, v in a_state(seq=seq).items() if k not in ("type", "v", "class_id", "student_id")}
              for seq in (3, 4)]
    with pytest.raises(SchemaError, match="unknown event type"):
        check_event("c1", {"type": "states", "v": 1, "class_id": "c1", "student_id": "s1", "states": states},
                    time.time())


@pytest.mark.parametrize("event", [
    {"type": "student", "student_id": "s1", "name": "x" * 500, "hidden": False},
    {"type": "student", "student_id": "../s1", "name": "Eve", "hidden": False},
    {"type": "presence", "student_id": "s1", "presence": "owned", "last_seen": 1.0, "name": ""},
    {"type": "class", "v": 1, "class_id": "c1", "title": "T", "session_id": "x", "emotions": True, "ended": "yes",
     "segment": None},
    {"type": "class", "v": 1, "class_id": "c1", "title": "T", "session_id": None, "emotions": True, "ended": False,
     "segment": {"segment_id": "seg1", "title": "S", "start": 1.0}},
    {"type": "revoked", "class_id": "c2"}, {"type": "revoked", "class_id": "c1", "token": "x"},
    {"type": "welcome"}, [], "class",
])
def test_other_relayed_events_are_checked_too(event):
    with pytest.raises(SchemaError):
        check_event("c1", event, time.time())


@pytest.mark.redis
@pytest.mark.slow
def test_forged_and_malformed_backplane_messages_change_nothing_on_any_node(tmp_path, redis_binary, kit):
    secret = secrets.token_hex(32)
    with RedisServer(redis_binary) as redis, \
            HubProcess(tmp_path / "a", redis_url=redis.url, secret=secret) as hub_a, \
            HubProcess(tmp_path / "b", redis_url=redis.url, secret=secret) as hub_b:
        info = hub_a.create_class("Guarded")
        class_id = info["class_id"]
        joined = join_class(hub_a.url, class_id, info["join_code"], "Ada")
        r = redis_py.Redis.from_url(redis.url)
        channel, room_key = f"smartsession:class:{class_id}", f"smartsession:room:{class_id}"
        forged_state = a_state(class_id=class_id, student_id=joined["student_id"], seq=10 ** 6, state="<b>x</b>",
                               engagement=1e308)
        forged_class = {"type": "class", "v": 1, "class_id": class_id, "title": "Owned", "session_id": None,
                        "segment": None, "emotions": True, "ended": True}
        forged_rename = {"type": "student", "student_id": joined["student_id"], "name": "Mallory", "hidden": False}

        async def main():
            events = []
            pub = StudentPublisher(class_id, joined["student_id"], joined["token"], url=hub_a.url)
            async with pub:
                # The class is live on node A (its session open, its status on the backplane) before node B
                # hears of it: each node has its own SQLite store here, and a node that saw the class first would
                # open a session of its own (a shared store picks one, DEPLOY.md).
                await pub.wait_connected(30)
                first = pub.publish(StateMessage("", "", 0, time.time(), "focused", 60.0, 0.9))
                await pub.wait_acked(first.seq, 30)
                async with TeacherSubscriber(class_id, info["teacher_token"], url=hub_b.url,
                                             on_event=events.append) as teacher:
                    await teacher.wait_snapshot(30)
                    # What someone with access to Redis but not the secret can send: the old unsealed format, a batch
                    # sealed with a guessed key, garbage, a huge batch, a replay of a real batch from long ago.
                    lines = [json.dumps(e) for e in (forged_class, forged_state, forged_rename)]
                    for i in range(200):
                        r.publish(channel, "\n".join(["attacker", *lines]))
                    r.publish(channel, seal(backplane_key("guess"), class_id, "attacker", lines, time.time()))
                    r.publish(channel, b"\xff\xfe" * 1000)
                    r.publish(channel, "x" * (5 << 20))
                    r.publish(channel, seal(backplane_key(secret), class_id, "attacker", lines, time.time() - 7200))
                    # Sealed with the secret, but not what a hub makes: dropped all the same.
                    deep = "[" * 25 + "1" + "]" * 25
                    r.publish(channel, seal(backplane_key(secret), class_id, "attacker",
                                            [json.dumps(forged_state), "{", deep], time.time()))
                    await asyncio.sleep(1.5)
                    # The class still records: the next state is acknowledged and reaches the teacher on hub B.
                    after = pub.publish(StateMessage("", "", 0, time.time(), "happy", 80.0, 0.9))
                    await pub.wait_acked(after.seq, 30)
                    relayed = lambda: [e.get("seq") for e in events if e["type"] == "state"]  # noqa: E731
                    await kit.eventually(lambda: after.seq in relayed())
                    room = teacher.room
                    ada = room.students[joined["student_id"]]
                    assert (ada.name, ada.state["state"], ada.state["seq"]) == ("Ada", "happy", after.seq)
                    assert not room.ended and room.title == "Guarded" and room.session_id is not None
                    assert all(e.get("title") != "Owned" and e.get("name") != "Mallory" for e in events)
                    assert all(e.get("state") != "<b>x</b>" for e in events)
            return pub

        asyncio.run(asyncio.wait_for(main(), 90))
        # A poisoned room entry (and one copied from another field) is skipped on a node that never held the
        # class: its teacher gets the class as it is.
        r.hset(room_key, "class", json.dumps(forged_class))
        r.hset(room_key, "student:zz", "0" * 64 + " " + json.dumps(forged_rename))
        r.hset(room_key, "state:zz", seal_entry(backplane_key(secret), class_id, "state:zz", "{not json"))
        with HubProcess(tmp_path / "c", redis_url=redis.url, secret=secret) as hub_c:
            async def fresh():
                async with TeacherSubscriber(class_id, info["teacher_token"], url=hub_c.url) as teacher:
                    return await teacher.wait_snapshot(30)

            snap = asyncio.run(asyncio.wait_for(fresh(), 60))
            # Hub C has its own store here, so the room's unsealed class entry leaves it without a title (or
            # session: a teacher's page alone starts no lesson); never with the forged one, and never ended.
            assert snap.title != "Owned" and not snap.ended
            assert [s.name for s in snap.students] == ["Ada"]
            health_c = hub_c.health()
        for hub in (hub_a, hub_b):
            log = hub.log_path.read_text()
            assert "Traceback" not in log, log[-3000:]
            # 200+ bad messages: a handful of lines, then one count of the rest.
            assert log.count("dropped a backplane message") <= 6, log[-3000:]
        assert health_c["ok"]
        log_c = (tmp_path / "c" / "hub.log").read_text()
        assert "Traceback" not in log_c and "room entry" in log_c


@pytest.mark.redis
@pytest.mark.slow
def test_a_students_batch_reaches_a_teacher_on_another_node_and_a_forged_batch_does_not(tmp_path, redis_binary, kit):
    secret = secrets.token_hex(32)
    with RedisServer(redis_binary) as redis, \
            HubProcess(tmp_path / "a", redis_url=redis.url, secret=secret) as hub_a, \
            HubProcess(tmp_path / "b", redis_url=redis.url, secret=secret) as hub_b:
        info = hub_a.create_class("Batched")
        class_id = info["class_id"]
        joined = join_class(hub_a.url, class_id, info["join_code"], "Ada")
        r = redis_py.Redis.from_url(redis.url)
        channel = f"smartsession:class:{class_id}"

        async def main():
            events = []
            pub = StudentPublisher(class_id, joined["student_id"], joined["token"], url=hub_a.url)
            async with pub, TeacherSubscriber(class_id, info["teacher_token"], url=hub_b.url,
                                              on_event=events.append) as teacher:
                await pub.wait_connected(30)
                await teacher.wait_connected(30)
                relayed = lambda: [e["seq"] for e in events if e["type"] == "state"]  # noqa: E731
                # Hub B relays the class once its subscription to the class's channel is live: wait for a first
                # state to come through, so the batch below cannot be published before it listens.
                first = pub.publish(StateMessage("", "", 0, time.time(), "focused", 50.0, 0.9))
                await kit.eventually(lambda: first.seq in relayed())
                assert first.seq in relayed()
                now = time.time()
                sent = pub.publish_batch([StateMessage("", "", 0, now - 0.8 + i / 5, "focused", 60.0 + i, 0.9)
                                          for i in range(5)])
                await pub.wait_acked(sent[-1].seq, 30)
                await kit.eventually(lambda: [m.seq for m in sent] == relayed()[-5:])
                # A forged batch for the same student, as the client would send it and as a hub's events: sealed
                # with a guessed key, or with the secret but of a type no hub relays. Neither reaches the teacher.
                forged = StateBatch(class_id, joined["student_id"], tuple(
                    StateMessage(class_id, joined["student_id"], sent[-1].seq + 1 + i, time.time(), "away", 0.0, 0.9)
                    for i in range(3))).to_dict()
                for key in (backplane_key("guess"), backplane_key(secret)):
                    r.publish(channel, seal(key, class_id, "attacker", [json.dumps(forged)], time.time()))
                await asyncio.sleep(1.5)
                after = pub.publish_batch([StateMessage("", "", 0, time.time(), "happy", 80.0, 0.9)])
                await pub.wait_acked(after[-1].seq, 30)
                await kit.eventually(lambda: after[-1].seq in relayed())
                assert all(e.get("state") != "away" for e in events if e["type"] == "state")
                assert relayed()[-6:] == [m.seq for m in sent + after]

        asyncio.run(asyncio.wait_for(main(), 90))
        for hub in (hub_a, hub_b):
            log = hub.log_path.read_text()
            assert "Traceback" not in log, log[-3000:]
        assert "dropped a backplane message" in hub_b.log_path.read_text() + hub_a.log_path.read_text()
