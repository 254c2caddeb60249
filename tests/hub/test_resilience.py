"""A hub that dies and comes back: nothing acknowledged is lost; a frozen client turns `disconnected`.

The hub runs as a real ``smartsession hub`` subprocess, killed with SIGKILL and restarted on the same data dir.
"""

from __future__ import annotations

import pytest

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

from smartsession.hub.client import StudentPublisher, TeacherSubscriber, join_class
from smartsession.hub.store import Store
from testkit.processes import HubProcess
from smartsession.schema import StateMessage


@pytest.mark.slow
def test_no_acknowledged_state_is_lost_across_a_hub_restart(tmp_path):
    hub = HubProcess(tmp_path / "data")
    with hub:
        info = hub.create_class("Restart")
        joined = join_class(hub.url, info["class_id"], info["join_code"], "Ada")

        async def main():
            acked_before_kill = -1
            pub = StudentPublisher(info["class_id"], joined["student_id"], joined["token"], url=hub.url,
                                   backoff=(0.1, 0.5))
            async with pub:
                await pub.wait_connected(30)
                sent = []
                for i in range(60):
                    sent.append(pub.publish(StateMessage("", "", 0, time.time(), "focused", float(i), 0.9)).seq)
                    await asyncio.sleep(0.05)
                    if i == 40:  # two seconds in: several commits acknowledged, a few states not yet
                        acked_before_kill = pub.acked_seq
                        hub.kill()  # SIGKILL mid-stream: no flush, no goodbye
                        await asyncio.sleep(0.3)
                        hub.start()
                await pub.wait_connected(30)
                await pub.wait_acked(sent[-1], 30)
                assert not pub.outbox
            return acked_before_kill, sent

        acked_before_kill, sent = asyncio.run(main())
    assert acked_before_kill > 0
    with Store(tmp_path / "data") as store:
        stored = set()
        for session_id in store.sessions(info["class_id"]).session_id:
            stored |= set(store.states(session_id).seq)
    assert {s for s in sent if s <= acked_before_kill} <= stored  # acknowledged before the crash: all there
    # The outbox keeps at most 16 unacknowledged states (latest win); everything after the restart arrives.
    assert set(sent[-10:]) <= stored


@pytest.mark.slow
def test_a_frozen_student_process_shows_disconnected_within_10_s(tmp_path):
    with HubProcess(tmp_path / "data") as hub:
        info = hub.create_class("Frozen")
        joined = join_class(hub.url, info["class_id"], info["join_code"], "Sleepy")
        student = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import asyncio, time
            from smartsession.hub.client import StudentPublisher
            from smartsession.schema import StateMessage
            async def main():
                async with StudentPublisher({info['class_id']!r}, {joined['student_id']!r}, {joined['token']!r},
                                            url={hub.url!r}) as pub:
                    while True:
                        pub.publish(StateMessage("", "", 0, time.time(), "focused", 50.0, 0.5))
                        await asyncio.sleep(0.2)
            asyncio.run(main())
        """)])
        try:
            async def main():
                events = []
                async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=hub.url,
                                             on_event=events.append) as teacher:
                    await teacher.wait_snapshot(30)
                    deadline = time.monotonic() + 30
                    while not any(e["type"] == "state" for e in events):
                        assert time.monotonic() < deadline, "student never published"
                        await asyncio.sleep(0.05)
                    os.kill(student.pid, signal.SIGSTOP)
                    frozen = time.monotonic()
                    while teacher.room.students[joined["student_id"]].presence != "disconnected":
                        assert time.monotonic() - frozen < 10, "frozen student still shown as connected"
                        await asyncio.sleep(0.05)
                    return time.monotonic() - frozen

            took = asyncio.run(main())
            assert took < 10
        finally:
            os.kill(student.pid, signal.SIGKILL)
            student.wait()
