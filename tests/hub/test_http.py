"""The hub's HTTP API and an anonymous client's view of every endpoint: nothing about a class leaks."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from smartsession.hub.client import HubError, StudentPublisher, create_class, join_class
from smartsession.hub.protocol import CloseCode
from smartsession.hub.standalone import running_hub
from smartsession.schema import StateMessage


def request(url, method="GET", body=None, token=None, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def call(*args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: request(*args, **kw))


def test_anonymous_client_learns_nothing(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Secret class")
            ws, ada, _ = await kit.student(url, info, "Ada")
            await ws.send(kit.state(ada, 1))
            await kit.until(ws, lambda m: m["type"] == "ack")
            session_id = hub.rooms[info["class_id"]].session_id
            secrets = [info["class_id"] + '"', "Ada", "Secret class", session_id, ada["student_id"]]
            probes = [
                ("GET", "/smartsession/api/classes", None, 405),
                ("POST", "/smartsession/api/classes", {"title": "Mine"}, 401),
                ("GET", "/smartsession/api/join", None, 405),
                ("POST", "/smartsession/api/join", {"class_id": info["class_id"], "join_code": "guess", "name": "x"},
                 403),
                ("POST", "/smartsession/api/join", {"class_id": info["class_id"]}, 403),
                ("GET", f"/smartsession/api/classes/{info['class_id']}/sessions", None, 401),
                ("GET", f"/smartsession/api/sessions/{session_id}/export.csv", None, 401),
                ("GET", f"/smartsession/api/sessions/{session_id}/export.json", None, 401),
                ("GET", "/smartsession/api/sessions/nope/export.csv", None, 401),
                ("GET", f"/smartsession/api/sessions/{session_id}/history", None, 401),
                ("GET", "/smartsession/", None, 404),
                ("GET", "/smartsession/api", None, 404),
                ("GET", "/", None, 404),
                ("GET", f"/smartsession/ws/teacher/{info['class_id']}", None, 400),  # plain GET on a websocket
            ]
            for method, path, body, status in probes:
                got, text = await call(url + path, method, body)
                assert got == status, (method, path, got, text)
                for secret in secrets:
                    assert secret not in text, (path, secret)
            status, text = await call(url + "/smartsession/health")
            assert status == 200 and set(json.loads(text)) >= {"ok", "version", "students", "teachers"}
            assert json.loads(text)["students"] == 1
            for secret in secrets:
                assert secret not in text
            # Websockets: without a valid hello an anonymous client receives nothing but a close.
            for path in (f"/smartsession/ws/teacher/{info['class_id']}",
                         f"/smartsession/ws/student/{info['class_id']}/{ada['student_id']}"):
                for first, code in ((kit.state(ada, 2), CloseCode.PROTOCOL),
                                    (json.dumps({"type": "hello", "v": 1}), CloseCode.AUTH_FAILED),
                                    (json.dumps({"type": "hello", "v": 1, "token": "x.y"}), CloseCode.AUTH_FAILED)):
                    anon = await kit.connect(url, path)
                    await anon.send(first)
                    got, reason = await kit.closed_with(anon)
                    assert got == code
                    assert not any(s in reason for s in secrets)

    asyncio.run(main())


def test_class_creation_join_and_export_permissions(tmp_path):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            loop = asyncio.get_running_loop()

            def sync(fn, *args):
                return loop.run_in_executor(None, fn, *args)

            info = await sync(create_class, url, "Made by admin", hub.admin_token)
            assert info["join_url"] == url + info["join_path"]
            assert info["teacher_url"].endswith(f"class={info['class_id']}&token={info['teacher_token']}")
            second = await sync(create_class, url, "Made by a teacher", info["teacher_token"])
            assert second["class_id"] != info["class_id"]
            joined = await sync(join_class, url, info["class_id"], info["join_code"], "  Ada   Lovelace ")
            assert joined["name"] == "Ada Lovelace" and joined["student_id"].startswith("s")
            again = await sync(join_class, url, info["class_id"], info["join_code"], "Ada Lovelace")
            assert again["student_id"] != joined["student_id"]  # server-chosen, never the student's pick
            with pytest.raises(HubError, match="403 only the admin token or a teacher token"):
                await sync(create_class, url, "Made by a student", joined["token"])
            with pytest.raises(HubError, match="401 invalid token signature"):
                await sync(create_class, url, "Forged", hub.admin_token[:-3] + "AAA")
            with pytest.raises(HubError, match="400 title"):
                await sync(create_class, url, "", hub.admin_token)
            with pytest.raises(HubError, match="403 wrong join code"):
                await sync(join_class, url, second["class_id"], info["join_code"], "Eve")
            with pytest.raises(HubError, match="400 name must be 1-120"):
                await sync(join_class, url, info["class_id"], info["join_code"], "x" * 500)
            status, text = await call(url + "/smartsession/api/join", "POST", raw=b"{not json")
            assert status == 400 and json.loads(text)["error"] == "body must be JSON"
            status, text = await call(url + "/smartsession/api/join", "POST", raw=b"x" * 10000)
            assert status == 413

            async with StudentPublisher(info["class_id"], joined["student_id"], joined["token"], url=url) as pub:
                await pub.wait_connected(30)
                for _ in range(3):
                    sent = pub.publish(StateMessage("", "", 0, time.time(), "focused", 60.0, 0.7,
                                                    features={"yaw": 1.5, "ear": 0.3}))
                await pub.wait_acked(sent.seq, 30)
            session_id = hub.rooms[info["class_id"]].session_id
            status, text = await call(url + f"/smartsession/api/classes/{info['class_id']}/sessions",
                                      token=info["teacher_token"])
            assert status == 200 and [s["session_id"] for s in json.loads(text)] == [session_id]
            base = url + f"/smartsession/api/sessions/{session_id}/export"
            status, text = await call(base + ".csv", token=info["teacher_token"])
            lines = text.strip().splitlines()
            assert status == 200 and lines[0].startswith("session_id,class_id,student_id,seq,t,received,state")
            assert len(lines) == 4 and ",1.5," in lines[1]
            status, text = await call(base + ".json", token=info["teacher_token"])
            doc = json.loads(text)
            assert status == 200 and len(doc["states"]) == 3 and doc["students"][0]["name"] == "Ada Lovelace"
            history = url + f"/smartsession/api/sessions/{session_id}/history"
            status, text = await call(history, token=info["teacher_token"])
            doc = json.loads(text)
            assert status == 200 and doc["session_id"] == session_id and doc["every"] == 1.0
            assert [p[1:] for p in doc["students"][joined["student_id"]]] == [[60.0, "focused"]]  # 3 states, 1 s
            assert len(doc["class"]) == 1 and doc["class"][0][1] == 60.0
            for bad in ("0", "x", "1e9"):
                status, text = await call(history + f"?every={bad}", token=info["teacher_token"])
                assert status == 400 and "every must be" in json.loads(text)["error"]
            for token in (second["teacher_token"], joined["token"], hub.admin_token):
                status, _ = await call(base + ".csv", token=token)
                assert status == 403
                status, _ = await call(history, token=token)
                assert status == 403
            status, _ = await call(url + f"/smartsession/api/classes/{info['class_id']}/sessions",
                                   token=second["teacher_token"])
            assert status == 403

    asyncio.run(main())
