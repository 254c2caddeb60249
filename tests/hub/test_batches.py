"""A student's states of a second in one ``states`` message: validated and bounded like single states, stored and
shown to the teacher one frame at a time, and the old ``state`` message still works beside it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from smartsession.hub import auth
from smartsession.hub.client import StudentPublisher, TeacherSubscriber
from smartsession.hub.config import HubConfig
from smartsession.hub.protocol import CloseCode, Connection, Hello, Limits, Refusal, Stale
from smartsession.hub.standalone import running_hub
from smartsession.schema import MAX_BATCH_STATES, SchemaError, StateBatch, StateMessage

SECRET = "s" * 64
WALL = 1.7e9


def authed(limits=Limits.of(HubConfig())):
    c = Connection("student", "c1", "s1", SECRET, limits, 0.0)
    token = auth.student_token(SECRET, "c1", "s1")
    assert isinstance(c.receive(json.dumps({"type": "hello", "v": 1, "token": token}), 0.0, WALL), Hello)
    return c


def entry(seq, **kw):
    d = {"seq": seq, "t": WALL + seq / 10, "state": "focused", "engagement": 50.5, "confidence": 0.5,
         "features": {"yaw": 1.5, "pitch": -2.0, "roll": 0.1, "gaze_x": 0.01, "gaze_y": -0.02, "ear": 0.3,
                      "mar": 0.05}, "segment": None, "paused": False, "consent": True}
    d.update(kw)
    return d


def batch(entries, **kw):
    msg = {"type": "states", "v": 1, "class_id": "c1", "student_id": "s1", "states": entries}
    msg.update(kw)
    return json.dumps(msg)


def refused(c, data, now=1.0):
    with pytest.raises(Refusal) as err:
        c.receive(data, now, WALL)
    assert err.value.reason and len(err.value.reason.encode()) <= 123
    return err.value.code, err.value.reason


def test_a_batch_gives_each_state_in_order_and_round_trips():
    c = authed()
    got = c.receive(batch([entry(s) for s in (1, 2, 3)]), 1.0, WALL)
    assert [m.seq for m in got] == [1, 2, 3] and all(isinstance(m, StateMessage) for m in got)
    assert got[1].t == WALL + 0.2 and got[1].features["ear"] == 0.3
    again = StateBatch.from_dict(StateBatch("c1", "s1", tuple(got)).to_dict())
    assert again.states == tuple(got)


def test_a_full_batch_of_real_size_fits_and_a_larger_one_is_refused():
    c = authed()
    full = batch([entry(s) for s in range(1, MAX_BATCH_STATES + 1)])
    assert len(full) <= HubConfig().max_batch_bytes
    assert len(c.receive(full, 1.0, WALL)) == MAX_BATCH_STATES
    code, reason = refused(authed(), batch([entry(s) for s in range(1, MAX_BATCH_STATES + 2)]))
    assert code == CloseCode.BAD_MESSAGE and f"1-{MAX_BATCH_STATES} states" in reason


@pytest.mark.parametrize("data, code, words", [
    (batch([]), CloseCode.BAD_MESSAGE, "1-32 states"),
    (batch("focused"), CloseCode.BAD_MESSAGE, "must be a list"),
    (batch([entry(1), entry(2, state="sleepy")]), CloseCode.BAD_MESSAGE, "states[1]: state must be one of"),
    (batch([entry(1, image="aGk=")]), CloseCode.BAD_MESSAGE, "states[0]: unknown field"),
    (batch([entry(1, class_id="c2")]), CloseCode.BAD_MESSAGE, "states[0]: unknown field"),
    (batch([entry(2), entry(2)]), CloseCode.BAD_MESSAGE, "seq must be above the one before it"),
    (batch([entry(1, features={"landmarks": 1.0})]), CloseCode.BAD_MESSAGE, "not shared"),
    (batch([entry(1)], student_id="s2"), CloseCode.FORBIDDEN, "another student"),
    (batch([entry(1)], extra=1), CloseCode.BAD_MESSAGE, "unknown field"),
    (batch([entry(1, t=WALL + 7200)]), CloseCode.BAD_MESSAGE, "ahead of the hub's clock"),
    (batch([entry(1), entry(2, t=float("nan"))]), CloseCode.BAD_MESSAGE, "states[1]: t must be finite"),
    (batch([entry(1, engagement=float("inf"))]), CloseCode.BAD_MESSAGE, "engagement must be finite"),
    (batch([entry(1, features={"yaw": float("-inf")})]), CloseCode.BAD_MESSAGE, "features.yaw must be finite"),
    (batch([entry(1, segment="<b>x</b>")]), CloseCode.BAD_MESSAGE, "states[0]: segment may only contain"),
    (json.dumps({"type": "state", "v": 1, "pad": "x" * 5000}), CloseCode.TOO_BIG, "4096"),
    ('{"type":"states",' + "x" * 20000, CloseCode.TOO_BIG, "16384"),
    ("x" * 5000, CloseCode.TOO_BIG, "4096"),
])
def test_bad_batches_are_refused_with_their_code(data, code, words):
    got, reason = refused(authed(), data)
    assert got == code and words in reason, reason


def test_a_teacher_cannot_publish_a_batch():
    c = Connection("teacher", "c1", None, SECRET, Limits.of(HubConfig()), 0.0)
    c.receive(json.dumps({"type": "hello", "v": 1, "token": auth.teacher_token(SECRET, "c1")}), 0.0, WALL)
    assert refused(c, batch([entry(1)]))[0] == CloseCode.FORBIDDEN


def test_stale_states_of_a_batch_are_noted_and_the_rest_taken():
    c = authed()
    c.receive(batch([entry(4), entry(5)]), 1.0, WALL)
    got = c.receive(batch([entry(3), entry(5), entry(6)]), 1.1, WALL)
    assert got[:2] == [Stale(3, 5), Stale(5, 5)] and got[2].seq == 6


def test_a_batch_spends_one_message_and_a_token_per_state():
    c = authed(Limits.of(HubConfig(rate=5, burst=5, state_rate=20, state_burst=30)))
    for k in range(3):  # three batches of ten at once: 30 states, 3 messages
        c.receive(batch([entry(10 * k + s) for s in range(1, 11)]), 1.0, WALL)
    code, reason = refused(c, batch([entry(100)]), 1.0)
    assert code == CloseCode.RATE_LIMITED and "states/s" in reason
    c = authed(Limits.of(HubConfig(rate=5, burst=5, state_rate=20, state_burst=30)))
    for k in range(20):  # 12 states a second, one message a second: sustained
        c.receive(batch([entry(12 * k + s) for s in range(1, 13)]), 1.0 + k, WALL)


def test_batches_round_the_hub_to_teacher_and_store_frame_for_frame(tmp_path):
    """Real websockets: a publisher's batches reach the teacher as one state event per frame, are stored whole and
    acknowledged; an old single state still works on the same connection."""

    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Batches")
            pub = await StudentPublisher.join(url, info["class_id"], info["join_code"], "Ada")
            teacher = TeacherSubscriber(info["class_id"], info["teacher_token"], url=url)
            seen: list[dict] = []
            teacher.on_event = lambda e: seen.append(e) if e.get("type") == "state" else None
            await teacher.start()
            await pub.start()
            await asyncio.wait_for(pub.connected.wait(), 30)
            await asyncio.wait_for(teacher.connected.wait(), 30)
            now = time.time()
            sent = []
            for k in range(3):
                msgs = [StateMessage(class_id="", student_id="", seq=0, t=now + k + i / 12, state="focused",
                                     engagement=40.0 + i, confidence=0.8) for i in range(12)]
                sent += pub.publish_batch(msgs)
            sent.append(pub.publish(StateMessage(class_id="", student_id="", seq=0, t=now + 3.5, state="away",
                                                 engagement=0.0, confidence=1.0)))
            await pub.wait_acked(sent[-1].seq, timeout=30)
            deadline = time.monotonic() + 30
            while len(seen) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert [e["seq"] for e in seen] == [m.seq for m in sent]
            assert all(e["received"] >= now - 1 for e in seen)
            await pub.stop()
            await teacher.stop()
            rows = hub.store.states(hub.store.open_session(info["class_id"])[0])
            assert list(rows.seq) == [m.seq for m in sent]
            assert list(rows.engagement[:12]) == [40.0 + i for i in range(12)]
            # Each frame of a batch is received where it was captured relative to the batch's newest, on the
            # hub's clock: the per-second history sees the frames spread over their second.
            spread = (rows.received[:12] - rows.received[11]).to_numpy()
            assert spread == pytest.approx([(i - 11) / 12 for i in range(12)], abs=1e-6)

    asyncio.run(asyncio.wait_for(main(), 120))
