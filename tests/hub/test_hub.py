"""The hub over real websockets on 127.0.0.1: auth matrix, every bad input, snapshots, commands, presence.

Each refusal must close only the offender, with its documented code, while a well-behaved student and the
teacher keep working.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
import websockets

from smartsession.hub import auth
from smartsession.hub.client import StudentPublisher, TeacherSubscriber
from smartsession.hub.protocol import CloseCode
from smartsession.hub.standalone import running_hub
from smartsession.schema import StateMessage


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.mark.slow
def test_auth_matrix_refuses_every_forbidden_action(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            a, b = hub.create_class("A"), hub.create_class("B")
            ws, ada, _ = await kit.student(url, a, "Ada")
            bob = await kit.join(url, a, "Bob")
            eve = await kit.join(url, b, "Eve")
            cases = [
                # (path, token, expected code): what a student or teacher must not be able to do
                (f"/smartsession/ws/teacher/{a['class_id']}", ada["token"], CloseCode.FORBIDDEN),
                (f"/smartsession/ws/student/{a['class_id']}/{bob['student_id']}", ada["token"], CloseCode.FORBIDDEN),
                (f"/smartsession/ws/student/{b['class_id']}/{ada['student_id']}", ada["token"], CloseCode.FORBIDDEN),
                (f"/smartsession/ws/teacher/{b['class_id']}", a["teacher_token"], CloseCode.FORBIDDEN),
                (f"/smartsession/ws/teacher/{b['class_id']}", eve["token"], CloseCode.FORBIDDEN),
                (f"/smartsession/ws/teacher/{a['class_id']}", auth.teacher_token("forged", a["class_id"]),
                 CloseCode.AUTH_FAILED),
                (f"/smartsession/ws/teacher/{a['class_id']}", auth.teacher_token(hub.secret, a["class_id"], ttl=-1),
                 CloseCode.AUTH_FAILED),
                (f"/smartsession/ws/student/{a['class_id']}/{bob['student_id']}",
                 auth.student_token("other-secret", a["class_id"], bob["student_id"]), CloseCode.AUTH_FAILED),
                (f"/smartsession/ws/teacher/{a['class_id']}", hub.admin_token, CloseCode.FORBIDDEN),
            ]
            for path, token, code in cases:
                other = await kit.connect(url, path)
                await other.send(json.dumps({"type": "hello", "v": 1, "token": token}))
                got, reason = await kit.closed_with(other)
                assert got == code, (path, got, reason)
                assert token not in reason
            # A student publishing as another student or into another class is closed too.
            for field, value in (("student_id", bob["student_id"]), ("class_id", b["class_id"])):
                ws2, ada2, _ = await kit.student(url, a, "Ada again")
                await ws2.send(kit.state(ada2, 1, **{field: value}))
                assert (await kit.closed_with(ws2))[0] == CloseCode.FORBIDDEN
            # Teacher of B sees nothing of A.
            tb, snap = await kit.teacher(url, b)
            assert [s["name"] for s in snap["students"]] == ["Eve"] and snap["class_id"] == b["class_id"]
            await ws.send(kit.state(ada, 1))
            with pytest.raises(asyncio.TimeoutError):
                await kit.until(tb, lambda m: m.get("type") == "state", timeout=1.0)
            await ws.close()
            await tb.close()

    run(main())


BAD_INPUTS = [
    # (name, what the offender sends after hello, expected close code)
    ("malformed JSON", lambda kit, j: "{'state': focused", CloseCode.BAD_JSON),
    ("binary frame", lambda kit, j: b"\x89PNG\r\n", CloseCode.BAD_JSON),
    ("not an object", lambda kit, j: "[1, 2, 3]", CloseCode.BAD_MESSAGE),
    ("wrong type", lambda kit, j: kit.state(j, 1, engagement="very"), CloseCode.BAD_MESSAGE),
    ("out of range", lambda kit, j: kit.state(j, 1, confidence=7), CloseCode.BAD_MESSAGE),
    ("not finite", lambda kit, j: kit.state(j, 1).replace('"engagement": 80.0', '"engagement": NaN'),
     CloseCode.BAD_MESSAGE),
    ("unknown state", lambda kit, j: kit.state(j, 1, state="sleepy"), CloseCode.BAD_MESSAGE),
    ("raw landmarks", lambda kit, j: kit.state(j, 1, landmarks=[[0.1, 0.2, 0.3]] * 10), CloseCode.BAD_MESSAGE),
    ("unknown type", lambda kit, j: json.dumps({"type": "frame", "v": 1}), CloseCode.UNKNOWN_TYPE),
    ("teacher command", lambda kit, j: json.dumps({"type": "command", "v": 1, "command": "end_session"}),
     CloseCode.FORBIDDEN),
    ("oversized", lambda kit, j: kit.state(j, 1, pad="x" * 5000), CloseCode.TOO_BIG),
    ("huge", lambda kit, j: "x" * 300_000, 1009),  # above tornado's own frame limit
]


@pytest.mark.slow
def test_every_bad_input_closes_only_the_offender(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Robust")
            good, ada, _ = await kit.student(url, info, "Ada")
            tws, _ = await kit.teacher(url, info)
            seq = 0
            for name, make, code in BAD_INPUTS:
                ws, joined, _ = await kit.student(url, info, f"Mallory {name}")
                await ws.send(make(kit, joined))
                got, reason = await kit.closed_with(ws)
                assert got == code, (name, got, reason)
                assert reason or code == 1009, name
                # The good student and the teacher carry on.
                seq += 1
                await good.send(kit.state(ada, seq))
                assert (await kit.until(good, lambda m: m["type"] == "ack"))["seq"] == seq
                msg = await kit.until(tws, lambda m: m["type"] == "state" and m["student_id"] == ada["student_id"])
                assert msg["seq"] == seq
            assert hub.health()["ok"]

    run(main())


def test_replayed_seq_is_nacked_and_a_flood_is_cut(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path, rate=10.0, burst=20.0) as (hub, url):
            info = hub.create_class("Seq")
            ws, ada, _ = await kit.student(url, info)
            await ws.send(kit.state(ada, 10))
            await ws.send(kit.state(ada, 10))
            await ws.send(kit.state(ada, 4))
            nacks = [await kit.until(ws, lambda m: m["type"] == "nack") for _ in range(2)]
            assert [(n["seq"], n["last_seq"]) for n in nacks] == [(10, 10), (4, 10)]
            await ws.send(kit.state(ada, 11))
            assert (await kit.until(ws, lambda m: m["type"] == "ack" and m["seq"] == 11))["seq"] == 11
            flood, bob, _ = await kit.student(url, info, "Bob")
            tws, _ = await kit.teacher(url, info)
            for seq in range(1, 200):
                try:
                    await flood.send(kit.state(bob, seq))
                except websockets.ConnectionClosed:
                    break
            assert (await kit.closed_with(flood))[0] == CloseCode.RATE_LIMITED
            await ws.send(kit.state(ada, 12))
            assert (await kit.until(tws, lambda m: m["type"] == "state" and m["student_id"] == ada["student_id"]))[
                "seq"] == 12

    run(main())


@pytest.mark.slow
def test_hello_timeout_origin_check_and_replaced_connection(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path, hello_timeout=1.0,
                               allowed_origins=["https://school.example"]) as (hub, url):
            info = hub.create_class("Edges")
            silent = await kit.connect(url, f"/smartsession/ws/teacher/{info['class_id']}")
            assert (await kit.closed_with(silent))[0] == CloseCode.HELLO_TIMEOUT
            path = f"/smartsession/ws/teacher/{info['class_id']}"
            with pytest.raises(websockets.InvalidStatus) as err:
                await kit.connect(url, path, origin="http://evil.example")
            assert err.value.response.status_code == 403
            host = url.split("//")[1]
            for origin in (f"http://{host}", "https://school.example"):
                ok = await kit.connect(url, path, origin=origin)
                assert (await kit.hello(ok, info["teacher_token"]))["type"] == "snapshot"
                await ok.close()
            first, ada, _ = await kit.student(url, info)
            second = await kit.connect(url, f"/smartsession/ws/student/{info['class_id']}/{ada['student_id']}")
            assert (await kit.hello(second, ada["token"]))["type"] == "welcome"
            assert (await kit.closed_with(first))[0] == CloseCode.REPLACED
            await second.send(kit.state(ada, 1))
            assert (await kit.until(second, lambda m: m["type"] == "ack"))["seq"] == 1

    run(main())


def test_late_teacher_gets_a_full_snapshot_then_updates(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Late")
            early, _ = await kit.teacher(url, info)
            await early.send(json.dumps({"type": "command", "v": 1, "id": 1, "command": "start_segment",
                                         "title": "Kinematics"}))
            assert (await kit.until(early, lambda m: m["type"] == "result"))["ok"]
            await early.close()
            ada_ws, ada, welcome = await kit.student(url, info, "Ada")
            assert welcome["segment"]["title"] == "Kinematics"
            bob_ws, bob, _ = await kit.student(url, info, "Bob")
            await ada_ws.send(kit.state(ada, 1, engagement=91.0))
            await bob_ws.send(kit.state(bob, 1, state="drowsy", engagement=20.0))
            await bob_ws.send(kit.state(bob, 2, paused=True, state="away", engagement=0.0))
            for ws, last in ((ada_ws, 1), (bob_ws, 2)):
                await kit.until(ws, lambda m: m["type"] == "ack" and m["seq"] == last)
            await ada_ws.close()
            room = hub.rooms[info["class_id"]]
            await kit.eventually(lambda: room.students[ada["student_id"]].presence == "disconnected")
            late, snap = await kit.teacher(url, info)
            students = {s["name"]: s for s in snap["students"]}
            assert snap["segment"]["title"] == "Kinematics" and snap["session_id"]
            assert students["Ada"]["presence"] == "disconnected" and students["Ada"]["state"]["engagement"] == 91.0
            assert students["Bob"]["presence"] == "paused" and students["Bob"]["state"]["seq"] == 2
            assert students["Bob"]["state"]["segment"] == snap["segment"]["segment_id"]
            assert all(s["last_seen"] > 0 for s in students.values())
            await bob_ws.send(kit.state(bob, 3))
            update = await kit.until(late, lambda m: m["type"] == "state")
            assert (update["student_id"], update["seq"], update["paused"]) == (bob["student_id"], 3, False)

    run(main())


def test_teacher_commands_reach_students_and_the_store(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Commands")
            statuses = []
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=url) as teacher:
                await teacher.wait_snapshot(30)
                pub = await StudentPublisher.join(url, info["class_id"], info["join_code"], "Ada",
                                                  on_class=statuses.append)
                async with pub:
                    await pub.wait_connected(30)
                    first_session = pub.status["session_id"]
                    result = await teacher.send_command("start_session", title="Lecture 2")
                    assert result["session_id"] != first_session
                    await teacher.send_command("start_segment", title="Optics")
                    await teacher.send_command("set_emotions", emotions=False)
                    await kit.eventually(lambda: not pub.emotions and pub.segment)
                    assert (pub.emotions, pub.status["segment"]["title"]) == (False, "Optics")
                    sent = pub.publish(StateMessage("", "", 0, time.time(), "focused", 77.0, 0.8))
                    assert sent.segment == pub.segment
                    await pub.wait_acked(sent.seq, 30)
                    await teacher.send_command("rename_student", student_id=pub.student_id, name="Ada L.")
                    await teacher.send_command("hide_student", student_id=pub.student_id, hidden=True)
                    with pytest.raises(Exception, match="no student"):
                        await teacher.send_command("hide_student", student_id="snobody", hidden=True)
                    await kit.eventually(lambda: teacher.room.students[pub.student_id].hidden)
                    s = teacher.room.students[pub.student_id]
                    assert (s.name, s.hidden, s.state["seq"]) == ("Ada L.", True, sent.seq)
                    await teacher.send_command("end_session")
            hub.store.flush()
            sessions = hub.store.sessions(info["class_id"])
            lecture = sessions[sessions.title == "Lecture 2"].iloc[0]
            assert lecture.ended > lecture.started
            seg = hub.store.segments(lecture.session_id)
            assert list(seg.title) == ["Optics"] and seg["end"].notna().all()
            states = hub.store.states(lecture.session_id)
            assert list(states.segment) == [seg.segment_id.iloc[0]]
            assert list(hub.store.students(lecture.session_id).name) == ["Ada L."]
            cmds = hub.store.commands(lecture.session_id)
            assert "set_emotions" in set(cmds.command) and "start_segment" in set(cmds.command)
            assert hub.store.class_info(info["class_id"])["emotions"] is False
            assert statuses[0]["emotions"] is True and statuses[-1]["emotions"] is False

    run(main())


def test_an_ended_session_stays_ended_until_a_student_joins_anew_or_the_teacher_starts_one(tmp_path, kit):
    # "End session" at the end of a lesson, with students still on their pages: their states, reconnects and a
    # teacher page opened afterwards must not open a session of their own (it used to open at the next state).
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Lesson")
            cid = info["class_id"]
            async with TeacherSubscriber(cid, info["teacher_token"], url=url) as teacher:
                await teacher.wait_snapshot(30)
                ada = await StudentPublisher.join(url, cid, info["join_code"], "Ada")
                async with ada:
                    await ada.wait_connected(30)
                    lesson = ada.status["session_id"]
                    sent = ada.publish(StateMessage("", "", 0, time.time(), "focused", 70.0, 0.9))
                    await ada.wait_acked(sent.seq, 30)
                    await teacher.send_command("end_session")
                    await kit.eventually(lambda: ada.status.get("ended") is True)
                    assert ada.status["session_id"] is None and teacher.room.ended
                    late = ada.publish(StateMessage("", "", 0, time.time(), "focused", 70.0, 0.9))
                    await kit.eventually(lambda: not ada.outbox)  # refused: dropped, not kept to resend
                    assert ada.acked_seq < late.seq and teacher.room.session_id is None
                    async with TeacherSubscriber(cid, info["teacher_token"], url=url) as reopened:
                        snap = await reopened.wait_snapshot(30)
                        assert snap.session_id is None and snap.ended
                    hub.store.flush()
                    sessions = hub.store.sessions(cid)
                    assert list(sessions.session_id) == [lesson] and sessions.ended.notna().all()
                    assert list(hub.store.states(lesson).seq) == [sent.seq]

                    # A student joining anew is the next lesson: it opens, and Ada hears of it.
                    bob = await StudentPublisher.join(url, cid, info["join_code"], "Bob")
                    async with bob:
                        await bob.wait_connected(30)
                        nxt = bob.status["session_id"]
                        assert nxt not in (None, lesson) and bob.status["ended"] is False
                        await kit.eventually(lambda: ada.status["session_id"] == nxt)
                        await teacher.send_command("end_session")
                        await kit.eventually(lambda: bob.status.get("ended") is True)
                        # The teacher starting one opens it too.
                        started = await teacher.send_command("start_session", title="After the break")
                        await kit.eventually(lambda: bob.status["session_id"] == started["session_id"])
                        assert bob.status["ended"] is False

    run(main())


@pytest.mark.slow
def test_a_silent_client_is_marked_disconnected_within_10_s(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Dead")
            joined = await kit.join(url, info, "Ghost")
            tws, _ = await kit.teacher(url, info)
            # A raw TCP client: completes the handshake and hello, then never reads or answers a ping.
            host, port = url.split("//")[1].split(":")
            raw = socket.create_connection((host, int(port)))
            raw.sendall((
                f"GET /smartsession/ws/student/{info['class_id']}/{joined['student_id']} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode())
            await asyncio.get_running_loop().run_in_executor(None, raw.recv, 1024)
            payload = json.dumps({"type": "hello", "v": 1, "token": joined["token"]}).encode()
            mask = b"\x00\x00\x00\x00"
            raw.sendall(bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask + payload)
            connected = await kit.until(tws, lambda m: m["type"] == "presence")
            assert connected["presence"] == "connected"
            t0 = time.monotonic()
            gone = await kit.until(tws, lambda m: m["type"] == "presence", timeout=15)
            assert gone["presence"] == "disconnected" and gone["student_id"] == joined["student_id"]
            assert time.monotonic() - t0 < 10
            raw.close()

    run(main())
