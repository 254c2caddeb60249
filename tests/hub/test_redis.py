"""Scale-out: two real hub processes sharing a real redis-server started on 127.0.0.1 by the test.

A student publishes to hub A; a teacher on hub B gets the snapshot and every update, and B's commands reach A.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest
import redis as redis_py

from smartsession.hub.backplane import RedisBackplane
from smartsession.hub.client import StudentPublisher, TeacherSubscriber, join_class
from smartsession.hub.standalone import running_hub
from testkit.processes import HubProcess, RedisServer
from smartsession.schema import StateMessage

pytestmark = pytest.mark.redis


@pytest.mark.slow
def test_fan_out_and_snapshot_across_two_hubs(tmp_path, redis_binary, kit):
    secret = secrets.token_hex(32)
    with RedisServer(redis_binary) as redis, \
            HubProcess(tmp_path / "a", redis_url=redis.url, secret=secret) as hub_a, \
            HubProcess(tmp_path / "b", redis_url=redis.url, secret=secret) as hub_b:
        info = hub_a.create_class("Scaled")
        joined = join_class(hub_a.url, info["class_id"], info["join_code"], "Ada")
        redis_client = redis_py.Redis.from_url(redis.url)

        async def main():
            pub = StudentPublisher(info["class_id"], joined["student_id"], joined["token"], url=hub_a.url)
            async with pub:
                await pub.wait_connected(30)
                first = pub.publish(StateMessage("", "", 0, time.time(), "distracted", 35.0, 0.6))
                await pub.wait_acked(first.seq, 30)
                # Hub A's backplane pipeline has put the state in the room's hash, where hub B will read it.
                room_key = f"smartsession:room:{info['class_id']}"
                # Each entry is sealed: "<hmac> <event JSON>" (relay.py).
                stored = lambda: (redis_client.hget(room_key, f"state:{joined['student_id']}")  # noqa: E731
                                  or b"- {}").split(b" ", 1)[1]
                await kit.eventually(lambda: json.loads(stored()).get("seq") == first.seq)
                assert json.loads(stored())["seq"] == first.seq
                # A teacher arriving late on hub B sees the class as hub A knows it.
                events = []
                async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=hub_b.url,
                                             on_event=events.append) as teacher:
                    snap = await teacher.wait_snapshot(30)
                    [ada] = snap.students
                    assert (ada.name, ada.presence, ada.state["seq"]) == ("Ada", "connected", first.seq)
                    assert snap.session_id == pub.status["session_id"]
                    # Live fan-out A -> B.
                    sent = [pub.publish(StateMessage("", "", 0, time.time(), "focused", 60.0 + i, 0.9))
                            for i in range(5)]
                    relayed = lambda: [e["seq"] for e in events if e["type"] == "state"]  # noqa: E731
                    await kit.eventually(lambda: relayed() == [m.seq for m in sent])
                    assert relayed() == [m.seq for m in sent], events
                    # Each hub listens to the classes it holds, by channel: no hub hears every class.
                    channels = {c.decode() for c in redis_client.pubsub_channels("smartsession:class:*")}
                    assert channels == {f"smartsession:class:{info['class_id']}"}
                    assert redis_client.pubsub_numpat() == 0
                    assert redis_client.pubsub_numsub(f"smartsession:class:{info['class_id']}")[0][1] == 2
                    # Commands B -> students on A.
                    await teacher.send_command("start_segment", title="Scaling out")
                    await kit.eventually(lambda: pub.status.get("segment") is not None)
                    assert pub.status["segment"]["title"] == "Scaling out"
            # The student leaving hub A shows up on hub B as disconnected (in the snapshot, or right after it:
            # hub A's backplane sends within its flush interval).
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=hub_b.url) as teacher:
                snap = await teacher.wait_snapshot(30)
                presence = lambda: teacher.room.students[joined["student_id"]].presence  # noqa: E731
                await kit.eventually(lambda: presence() == "disconnected")
                assert presence() == "disconnected"
                assert snap.segment.title == "Scaling out"

        asyncio.run(asyncio.wait_for(main(), 60))
        kit.eventually_sync(lambda: hub_a.health()["students"] == 0)
        assert hub_a.health()["students"] == 0 and hub_b.health()["ok"]


def test_what_another_hub_publishes_while_a_room_loads_is_applied_once_it_is_loaded(tmp_path, redis_binary, kit):
    secret = secrets.token_hex(32)

    async def main():
        async with running_hub(data_dir=tmp_path, redis_url=redis.url, secret=secret) as (hub, url):
            info = hub.create_class("Loading")
            ada = await kit.join(url, info, "Ada")
            other = RedisBackplane(redis.url)  # another hub: its own origin, the deployment's secret
            await other.start(lambda *_: None, secret=secret)
            renamed = {"type": "student", "student_id": ada["student_id"], "name": "Ada L.", "hidden": False}
            read_hash = hub.backplane.load

            async def load(class_id):
                # The room's hash is read; only then does the other hub's rename go out, before the room is ready.
                events = await read_hash(class_id)
                other.publish(class_id, renamed, json.dumps(renamed))
                await asyncio.sleep(0.5)
                return events

            hub.backplane.load = load
            try:
                ws, snap = await kit.teacher(url, info)
            finally:
                await other.stop()
            assert [s["name"] for s in snap["students"]] == ["Ada L."]
            await ws.close()

    with RedisServer(redis_binary) as redis:
        asyncio.run(asyncio.wait_for(main(), 60))
