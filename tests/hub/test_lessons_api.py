"""The lesson plan and lesson history routes of a real hub: teacher-only, bounded, parsed, summarised."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from smartsession.hub.client import StudentPublisher, TeacherSubscriber, fetch_lessons, fetch_plan, save_plan
from smartsession.hub.standalone import running_hub
from smartsession.lesson.history import biggest_drop
from smartsession.schema import StateMessage


def post(url, body: bytes, token=None):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_plans_are_teacher_only_bounded_and_kept(tmp_path):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Plans")
            cid, token = info["class_id"], info["teacher_token"]
            call = lambda f, *a: asyncio.get_running_loop().run_in_executor(None, f, *a)  # noqa: E731
            items = await call(save_plan, url, cid, "# Intro\n# <script>x</script>\n# Quiz", token)
            assert items == ["Intro", "<script>x</script>", "Quiz"]
            assert await call(fetch_plan, url, cid, token) == items
            route = f"{url}/smartsession/api/classes/{cid}/plan"
            big = json.dumps({"text": "\n".join(f"item {i}" for i in range(10_000))}).encode()
            status, body = await call(post, route, big, token)
            assert status == 413 and "65536" in body
            status, body = await call(post, route, json.dumps({"text": "\n".join("ab" * 200)}).encode(), token)
            assert status == 400 and "more than 100 items" in body
            status, body = await call(post, route, json.dumps({"text": "x" * 1000}).encode(), token)
            assert status == 400 and "longer than 120" in body
            joined = await call(lambda: __import__("smartsession.hub.client", fromlist=["join_class"]).join_class(
                url, cid, info["join_code"], "Ada"))
            status, _ = await call(post, route, json.dumps({"text": "x"}).encode(), joined["token"])
            assert status == 403
            assert await call(fetch_plan, url, cid, token) == items  # nothing lost

    asyncio.run(asyncio.wait_for(main(), 120))


def test_the_lesson_history_summarises_each_session(tmp_path):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("History")
            cid, token = info["class_id"], info["teacher_token"]
            async with TeacherSubscriber(cid, token, url=url) as teacher:
                await teacher.wait_snapshot(30)
                pub = await StudentPublisher.join(url, cid, info["join_code"], "Ada")
                async with pub:
                    await pub.wait_connected(30)
                    await teacher.send_command("start_segment", title="Optics")
                    await teacher.ask("sense", seconds=30)
                    sent = pub.publish(StateMessage("", "", 0, time.time(), "focused", 70.0, 0.8))
                    await pub.wait_acked(sent.seq, 30)
                    await teacher.send_command("end_session")
            lessons = await asyncio.get_running_loop().run_in_executor(None, fetch_lessons, url, cid, token)
            last = lessons[-1]
            assert (last["students"], last["engagement"], last["checkins"], last["response_rate"]) == (1, 70.0, 1, 0.0)

    asyncio.run(asyncio.wait_for(main(), 120))


def test_the_biggest_drop_is_between_consecutive_minutes():
    assert biggest_drop([(10, 80.0), (11, 60.0), (12, 70.0), (14, 10.0)]) == (20.0, 660.0)
    assert biggest_drop([(1, 50.0)]) is None


def test_after_a_restart_a_teacher_page_opens_no_empty_lesson_and_the_last_one_is_listed(tmp_path):
    async def lesson():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Restart")
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=url) as teacher:
                await teacher.wait_snapshot(30)
                pub = await StudentPublisher.join(url, info["class_id"], info["join_code"], "Ada")
                async with pub:
                    await pub.wait_connected(30)
                    sent = pub.publish(StateMessage("", "", 0, time.time(), "focused", 70.0, 0.8))
                    await pub.wait_acked(sent.seq, 30)
                    await teacher.send_command("end_session")
            return info

    async def reopened(info):
        async with running_hub(data_dir=tmp_path) as (hub, url):
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=url) as teacher:
                snap = await teacher.wait_snapshot(30)
                lessons = await asyncio.get_running_loop().run_in_executor(
                    None, fetch_lessons, url, info["class_id"], info["teacher_token"])
                pub = await StudentPublisher.join(url, info["class_id"], info["join_code"], "Ben")
                async with pub:
                    await pub.wait_connected(30)
                    return snap, lessons, pub.status["session_id"]

    info = asyncio.run(asyncio.wait_for(lesson(), 120))
    snap, lessons, new_session = asyncio.run(asyncio.wait_for(reopened(info), 120))
    assert (snap.session_id, snap.ended) == (None, True)
    assert len(lessons) == 1 and lessons[0]["students"] == 1
    assert new_session and new_session != lessons[0]["session_id"]  # a student joining anew opens the next
