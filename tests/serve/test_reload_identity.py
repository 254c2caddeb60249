"""A reloaded student page is the same student to the hub (issue 21): a real ``smartsession serve`` with the real
student page and its embedded hub; a page client that speaks to each kernel as the page's JavaScript does.

A student joins and publishes; the page reloads presenting its seat cookie; the new kernel's states arrive under the
same student id, the teacher has one card for them, live, under the name typed anew; the class counts no new
student. A client without the seat (none, or a made-up one) is another student, never this one.
"""

from __future__ import annotations

import asyncio
import sqlite3

import cv2
import pytest

from smartsession.dataset.media import astronaut
from smartsession.hub.client import TeacherSubscriber
from smartsession.hub.store import FILENAME
from testkit.pageclient import PageClient, jpeg_frames
from testkit.serving import kernel_id, running_server

from servekit import cookie_value, load_page


def students_in_store(server) -> list[tuple[str, str]]:
    """The class's students as the hub stored them (everyone who ever joined it): (id, name)."""
    with sqlite3.connect(f"file:{server.data_dir / FILENAME}?mode=ro", uri=True) as db:
        return sorted(db.execute("SELECT student_id, name FROM students WHERE class_id = ?", (server.class_id,)))


async def stored_eventually(server, check, timeout: float = 30.0) -> list[tuple[str, str]]:
    """The stored students once ``check`` holds for them (the hub commits its writes a moment later)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check(stored := students_in_store(server)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    return stored


@pytest.mark.slow
def test_a_reloaded_page_continues_as_the_same_student_and_only_its_seat_can(tmp_path):
    face = cv2.imencode(".jpg", cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    frames = jpeg_frames([face])

    states: list[dict] = []  # every state the teacher's page received

    async def publish_as(server, kid: str, name: str) -> dict:
        """Consent as ``name`` on kernel ``kid`` and send frames until the teacher sees a state from it."""
        seen = len(states)
        async with PageClient.for_kernel(server.url, kid) as page:
            await page.consent(name, analysis="server")
            stop = asyncio.Event()
            stream = asyncio.create_task(page.stream(frames, 5, stop))
            try:
                for _ in range(600):
                    if len(states) > seen:
                        break
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await stream
        assert len(states) > seen, f"no state from {name} reached the teacher"
        return states[-1]

    async def main(server):
        teacher = TeacherSubscriber(server.class_id, server.teacher_token, url=server.url,
                                    on_event=lambda e: states.append(e) if e.get("type") == "state" else None)
        async with teacher:
            await teacher.wait_snapshot(60)
            seat_name = f"ss-student-seat-{server.class_id}"
            status, body, cookies = await asyncio.to_thread(load_page, server, server.join_url)
            assert status == 200
            first = await publish_as(server, kernel_id(body), "Ada")
            ada = first["student_id"]
            assert await stored_eventually(server, lambda s: s) == [(ada, "Ada")]

            # Ada reloads: her browser presents the seat. The new kernel joins as Ada again, under the name she
            # types now; her states go on under her id, the teacher keeps one card for her, live.
            seat = cookie_value(cookies[seat_name])
            status, again, cookies = await asyncio.to_thread(load_page, server, server.join_url, {seat_name: seat})
            assert status == 200 and kernel_id(again) != kernel_id(body)
            assert "seat=" not in again and "seat=" not in body  # the seat token is for the kernel alone
            second = await publish_as(server, kernel_id(again), "Ada L.")
            assert second["student_id"] == ada and second["seq"] > first["seq"]
            snapshot = TeacherSubscriber(server.class_id, server.teacher_token, url=server.url)
            async with snapshot:
                cards = (await snapshot.wait_snapshot(60)).students
            assert [(s.student_id, s.name, s.presence) for s in cards] == [(ada, "Ada L.", "connected")]
            assert teacher.room.students[ada].name == "Ada L."  # the rename reached the open teacher page too
            # No new student: the class still has one, renamed.
            assert await stored_eventually(server, lambda s: s != [(ada, "Ada")]) == [(ada, "Ada L.")]

            # Without Ada's seat (a newcomer's browser; Ada's spent one, copied) a page is somebody else: a new
            # student, never Ada (made-up seats: test_admission; made-up seat tokens: tests/hub/test_rejoin.py).
            for cookie in ({}, {seat_name: seat}):
                status, page, _ = await asyncio.to_thread(load_page, server, server.join_url, cookie)
                assert status == 200
                other = await publish_as(server, kernel_id(page), "Eve")
                assert other["student_id"] != ada
            stored = await stored_eventually(server, lambda s: len(s) >= 3)
            assert len(stored) == 3 and (ada, "Ada L.") in stored

    with running_server(tmp_path, pool_size=0, analysis="server", connect_timeout=60, timeout=300) as server:
        asyncio.run(asyncio.wait_for(main(server), 900))
