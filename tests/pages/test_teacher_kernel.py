"""The teacher page's logic in a real Jupyter kernel, subscribed to a real hub on 127.0.0.1 with real students.

The hub runs in this process (its own event loop thread); the page runs in a separate ipykernel, on
that kernel's event loop exactly as under Voila; students publish with ``StudentPublisher``.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time

import numpy as np
import pytest
from jupyter_client.manager import start_new_kernel

from smartsession.hub import auth
from smartsession.hub.client import StudentPublisher
from smartsession.hub.standalone import running_hub
from smartsession.schema import StateMessage


class HubThread:
    """A real hub on a free port, served from a background event loop."""

    def __init__(self, data_dir, **settings):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._cm = running_hub(data_dir=str(data_dir), **settings)
        self.hub, self.url = self.run(self._cm.__aenter__())

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        async def wrapped():
            return fn(*args)

        return self.run(wrapped())

    def close(self):
        self.run(self._cm.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Kernel:
    """A real ipykernel; ``run(code)`` returns what the code printed."""

    def __init__(self):
        self.km, self.kc = start_new_kernel(kernel_name="python3")

    def run(self, code: str, timeout: float = 60) -> str:
        out, errors = [], []

        def hook(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        assert not errors, errors[0]
        return "".join(out)

    def json(self, expr: str):
        return json.loads(self.run(f"import json as _j; print(_j.dumps({expr}, default=str))"))

    def wait_for(self, expr: str, check, timeout: float = 30.0):
        """Poll ``expr`` in the kernel (its loop runs between polls) until ``check(value)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.json(expr)
            if check(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} never satisfied the check; last value: {value!r}")
            time.sleep(0.2)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def hub(tmp_path):
    h = HubThread(tmp_path / "hub")
    yield h
    h.close()


@pytest.fixture
def kernel():
    k = Kernel()
    yield k
    k.close()


CARDS = "{sid: page.view.card(sid, time.time()) for sid in page.view.students}"


def open_page(kernel, hub, klass, token=None):
    kernel.run(
        "import time\nfrom smartsession.pages.alerts import AlertRules\nfrom smartsession.pages.teacher import TeacherPage\n"
        f"page = TeacherPage({klass['class_id']!r}, {token or klass['teacher_token']!r}, "
        f"hub_url={hub.url!r}, rules=AlertRules(persist=1), "
        "environ={'SERVER_NAME': 'school.example', 'SERVER_PORT': '8866', 'SCRIPT_NAME': '/voila/render/teacher.ipynb'})"
    )


@pytest.mark.slow
def test_page_follows_real_students_and_sends_commands_through_a_real_hub(hub, kernel):
    klass = hub.call(hub.hub.create_class, "Maths 3B")
    open_page(kernel, hub, klass)
    kernel.wait_for("page.status", lambda s: s == "live")
    assert kernel.json("page.view.title") == "Maths 3B"
    join = kernel.json("page.join.value")  # the join code comes with the hub's snapshot
    assert f"http://school.example:8866/voila/render/student.ipynb?class={klass['class_id']}&amp;join={klass['join_code']}" in join
    assert "<svg" in join  # the QR code, inline

    async def students():
        pubs = []
        for name in ("Ana", "Ben", "Chloe"):
            pub = await StudentPublisher.join(hub.url, klass["class_id"], klass["join_code"], name)
            await pub.start()
            await pub.wait_connected()
            pubs.append(pub)
        return pubs

    pubs = hub.run(students())
    ana, ben, chloe = pubs

    async def publish(pub, state, engagement, paused=False):
        msg = pub.publish(StateMessage("x", "x", 0, time.time(), state, engagement, 0.9, {"yaw": 2.0}, paused=paused))
        await pub.wait_acked(msg.seq)

    for pub, state, score in ((ana, "focused", 90.0), (ben, "away", 10.0), (chloe, "drowsy", 30.0)):
        hub.run(publish(pub, state, score))

    cards = kernel.wait_for(CARDS, lambda c: len(c) == 3 and all(v["state"] != "uncertain" for v in c.values()))
    by_name = {c["label"]: c for c in cards.values()}
    assert {n: (c["state"], c["engagement"], c["presence"]) for n, c in by_name.items()} == {
        "Ana": ("focused", 90, "connected"),
        "Ben": ("away", 10, "connected"),
        "Chloe": ("drowsy", 30, "connected"),
    }
    # The redraw loop pushed them to the widgets: three cards in the grid, the gauge at the class mean.
    kernel.wait_for("len(page.grid.cards)", lambda n: n == 3)
    kernel.wait_for("page.gauge.value", lambda v: 'data-engagement="43"' in v)
    assert 'data-state="away" data-count="1"' in kernel.json("page.counts.value")
    # Ben stays away (alerts here fire after 1 s): a calm alert saying why.
    alerts = kernel.wait_for("page.alerts_box.value", lambda v: "Ben has been away" in v)
    assert 'data-rule="student"' in alerts and "why: state 'away' held for" in html.unescape(alerts)

    # Pausing and leaving reach the cards.
    hub.run(publish(ben, "away", 10.0, paused=True))
    kernel.wait_for(f"page.view.card({ben.student_id!r}, time.time())['presence']", lambda p: p == "paused")
    hub.run(chloe.stop())
    kernel.wait_for(f"page.view.card({chloe.student_id!r}, time.time())['presence']", lambda p: p == "disconnected")
    kernel.wait_for("[c['presence'] for c in page.grid.cards]", lambda p: sorted(p) == ["connected", "disconnected", "paused"])

    # Teacher commands go through the hub and come back as class/student events.
    kernel.run("page.segment_title.value = 'Exercise 2'; page._start_segment()")
    kernel.wait_for("[s.title for s in page.view.segments]", lambda t: t == ["Exercise 2"])
    deadline = time.monotonic() + 30
    while ana.segment is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ana.segment is not None  # students stamp their states with the new segment
    kernel.run("page.emotions_box.value = False")
    kernel.wait_for("page.view.emotions", lambda e: e is False)
    deadline = time.monotonic() + 30
    while ana.emotions and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ana.emotions is False
    kernel.run(f"page.grid.selected = {ana.student_id!r}; page.rename_input.value = 'Ana B.'; page._rename()")
    kernel.wait_for(f"page.view.students[{ana.student_id!r}].label", lambda n: n == "Ana B.")
    assert "Ana B." in kernel.wait_for("page.detail_title.value", lambda v: "Ana B." in v)
    kernel.run("page._toggle_hidden()")
    kernel.wait_for("len(page.grid.cards)", lambda n: n == 2)

    # The session report (smartsession.report) of what the hub stored, built off the loop, inline.
    kernel.run("page._toggle_report()")
    report = kernel.wait_for("page.report.value", lambda v: "srcdoc" in v, timeout=60)
    session_id = kernel.json("page.view.session_id")
    assert f'data-session="{session_id}"' in report and "Ana B." in report
    assert not re.search(r"<(script|link)[^>]+(src|href)=.https?:", html.unescape(report))  # plotly is inlined

    for pub in (ana, ben):
        hub.run(pub.stop())
    kernel.run("page.close(); page.close()")  # closing twice is harmless


@pytest.mark.slow
@pytest.mark.parametrize("which", ["student", "forged"])
def test_without_a_valid_teacher_token_the_page_shows_no_class_data(hub, kernel, which):
    klass = hub.call(hub.hub.create_class, "Maths")
    if which == "student":
        token = auth.student_token(hub.hub.secret, klass["class_id"], "s1")
    else:  # looks like a teacher token of this class, signed with another secret: only the hub can tell
        token = auth.teacher_token("not-the-server-secret", klass["class_id"])

    async def student():
        pub = await StudentPublisher.join(hub.url, klass["class_id"], klass["join_code"], "Ana")
        await pub.start()
        await pub.wait_connected()
        msg = pub.publish(StateMessage("x", "x", 0, time.time(), "focused", 80.0, 0.9))
        await pub.wait_acked(msg.seq)
        return pub

    pub = hub.run(student())
    open_page(kernel, hub, klass, token=token)
    status = kernel.wait_for("page.status", lambda s: s == "error")
    assert status == "error"
    time.sleep(1)
    assert kernel.json("page.view is None and page.grid.cards == []") is True
    assert kernel.json("page.dashboard.layout.display") == "none"
    assert kernel.json("page.form.layout.display") is None  # the token field is offered
    message = kernel.json("page.status_line.value")
    assert ("not a teacher token" if which == "student" else "signature") in message
    hub.run(pub.stop())


@pytest.mark.slow
def test_a_page_opened_mid_session_shows_the_session_from_its_start(hub, kernel):
    klass = hub.call(hub.hub.create_class, "Late teacher")

    async def earlier_lesson():
        pub = await StudentPublisher.join(hub.url, klass["class_id"], klass["join_code"], "Ana")
        await pub.start()
        await pub.wait_connected()
        for i, score in enumerate((20.0, 40.0, 60.0)):
            if i:
                await asyncio.sleep(1.05)  # three different seconds
            msg = pub.publish(StateMessage("x", "x", 0, time.time(), "focused", score, 0.9, {"yaw": 1.0}))
        await pub.wait_acked(msg.seq)
        return pub

    pub = hub.run(earlier_lesson())
    opened = time.time()
    open_page(kernel, hub, klass)
    kernel.wait_for("page.status", lambda s: s == "live")
    # Points from before the page existed: the class series and Ana's timeline start with the lesson.
    series = kernel.wait_for("page.view.series", lambda s: len(s) >= 3)
    assert [v for t, v in series if t < opened] == [20.0, 40.0, 60.0]
    timeline = kernel.json(f"page.view.timeline({pub.student_id!r})")
    assert [e for t, e, _ in timeline if t < opened] == [20.0, 40.0, 60.0]
    kernel.wait_for("page.chart.data[0].y if page.chart.data else []", lambda y: list(y)[:3] == [20.0, 40.0, 60.0])
    hub.run(pub.stop())
    kernel.run("page.close()")


@pytest.mark.slow
def test_the_plan_marks_segments_check_ins_show_a_live_tally_and_past_lessons_are_listed(hub, kernel):
    klass = hub.call(hub.hub.create_class, "Physics")
    open_page(kernel, hub, klass)
    kernel.wait_for("page.status", lambda s: s == "live")

    async def student(name):
        pub = await StudentPublisher.join(hub.url, klass["class_id"], klass["join_code"], name,
                                          on_checkin=seen.append)
        await pub.start()
        await pub.wait_connected()
        return pub

    seen: list[dict] = []
    ana = hub.run(student("Ana"))
    kernel.run("page.plan_panel.text.value = '# Intro\\n# <b>Optics</b>\\n# Quiz'; page.plan_panel._save()")
    assert "Intro" in kernel.wait_for("page.plan_panel.now.value", lambda v: "3 items" in v)
    # Hostile plans pasted into the page: refused with what to do, the saved plan kept.
    for hostile, words in (("'\\n'.join(f'item {i}' for i in range(10_000))", "more than 100 items"),
                           ("'x' * 1_000_000", "longer than 100,000 characters")):
        kernel.run(f"page.plan_panel.text.value = {hostile}; page.plan_panel._save()")
        assert words in kernel.json("page.notice.value")
        assert kernel.json("page.plan_panel.plan.items") == ["Intro", "<b>Optics</b>", "Quiz"]
    kernel.run("page.plan_panel.hotkey.presses += 1")  # the key N, as the browser half reports it
    kernel.wait_for("[s.title for s in page.view.segments]", lambda t: t == ["Intro"])
    kernel.run("page.plan_panel.advance()")
    kernel.wait_for("[s.title for s in page.view.segments]", lambda t: t == ["Intro", "<b>Optics</b>"])
    # The chart bands follow the plan's segments (the chart redraws every 2 s).
    kernel.wait_for("[a.text for a in page.chart.layout.annotations]", lambda t: t == ["Intro", "<b>Optics</b>"])
    now = kernel.json("page.plan_panel.now.value")
    assert "&lt;b&gt;Optics&lt;/b&gt;" in now and "Quiz" in now
    kernel.run("page.checkin_panel.send('sense')")
    deadline = time.monotonic() + 30
    while not any(m["type"] == "checkin" for m in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    question = next(m for m in seen if m["type"] == "checkin")
    async def answer():  # on the hub fixture's loop, where the publisher's connection lives
        return ana.answer(question["checkin_id"], 1)

    assert hub.run(answer())

    async def publish():
        msg = ana.publish(StateMessage("x", "x", 0, time.time(), "focused", 80.0, 0.9))
        await ana.wait_acked(msg.seq)

    hub.run(publish())
    tally = kernel.wait_for("page.checkin_panel.tally.value", lambda v: "1 of 1 present answered (100%)" in v)
    assert "Did that make sense?" in tally
    kernel.run("page._command('end_session')")
    kernel.wait_for("page.history.value", lambda v: "Past lessons" in v and "100%" in v)
    assert kernel.json("page.history_pick.value") == kernel.json("page._lessons[-1]['session_id']")
    hub.run(ana.stop())
    # The plan is kept with the class: a page opened later finds it.
    kernel.run("page.close()")
    open_page(kernel, hub, klass)
    kernel.wait_for("page.plan_panel.plan.items", lambda items: items == ["Intro", "<b>Optics</b>", "Quiz"])
    kernel.run("page.close()")


@pytest.mark.slow
def test_the_page_asks_by_itself_at_jittered_moments_only_when_switched_on(tmp_path, kernel):
    # Minutes of one second, and a hub that takes a check-in every half second, to watch several go out.
    hub = HubThread(tmp_path / "hub", checkin_min_interval=0.5)
    try:
        klass = hub.call(hub.hub.create_class, "Physics")
        open_page(kernel, hub, klass)
        kernel.wait_for("page.status", lambda s: s == "live")
        arrived: list[tuple[float, dict]] = []

        async def student():
            pub = await StudentPublisher.join(hub.url, klass["class_id"], klass["join_code"], "Ana",
                                              on_checkin=lambda m: arrived.append((time.monotonic(), m)))
            await pub.start()
            await pub.wait_connected()
            return pub

        ana = hub.run(student())
        panel = kernel.json("{'auto': page.checkin_panel.auto.value, 'every': page.checkin_panel.every.value, "
                            "'task': page.checkin_panel._auto_task is not None}")
        assert panel == {"auto": False, "every": 10, "task": False}  # off by default
        kernel.run("page.checkin_panel.minute_s = 1.0; page.checkin_panel.every.value = 2")
        time.sleep(4)  # two "minutes" with the box unticked: nothing is asked
        assert not [m for _, m in arrived if m["type"] == "checkin"]

        on = time.monotonic()
        kernel.run("page.checkin_panel.auto.value = True")
        deadline = time.monotonic() + 30
        while len([m for _, m in arrived if m["type"] == "checkin"]) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        kernel.run("page.checkin_panel.auto.value = False")
        off = time.monotonic()
        asked = [(t, m) for t, m in arrived if m["type"] == "checkin"]
        assert len(asked) >= 7, asked
        assert all(m["kind"] == "mind" and m["question"] == "Where was your mind just now?" for _, m in asked)
        gaps = np.diff([on] + [t for t, _ in asked])
        low, high = 2 * 0.7, 2 * 1.3  # every 2 "minutes", times 0.7-1.3
        assert ((gaps > low - 0.05) & (gaps < high + 0.5)).all(), gaps
        assert gaps.max() - gaps.min() > 0.2, gaps  # jittered, not a metronome
        # Switched off, it stops.
        time.sleep(high + 1)
        assert not [t for t, m in arrived if m["type"] == "checkin" and t > off]
        hub.run(ana.stop())
        kernel.run("page.close()")
    finally:
        hub.close()


@pytest.mark.slow
def test_a_lesson_starts_with_start_lesson_or_the_first_student_and_the_page_says_so(hub, kernel):
    klass = hub.call(hub.hub.create_class, "Physics")
    open_page(kernel, hub, klass)
    kernel.wait_for("page.status", lambda s: s == "live")
    controls = "{'button': page.session_button.description, 'line': page.lesson_line.value, 'session': page.view.session_id}"
    # Opened before the class arrives: the teacher can start the lesson, and the page says when it would start.
    before = kernel.json(controls)
    assert before["button"] == "Start lesson" and before["session"] is None
    assert "it starts when you press Start lesson or when the first student joins, whichever comes first" in before["line"]
    kernel.run("page.session_button.click()")
    running = kernel.wait_for(controls, lambda c: c["session"] is not None and c["button"] == "End lesson")
    assert "a lesson starts when you press Start lesson or when the first student joins" in running["line"]

    async def student():
        pub = await StudentPublisher.join(hub.url, klass["class_id"], klass["join_code"], "Ana")
        await pub.start()
        await pub.wait_connected()
        return pub

    ana = hub.run(student())
    assert ana.status.get("session_id") in (None, running["session"])  # joins the teacher's lesson, opens none
    time.sleep(1)
    assert kernel.json(controls)["session"] == running["session"]
    # Ended with Ana still connected: no lesson opens by itself, and Start lesson opens the next one.
    kernel.run("page.session_button.click()")
    kernel.wait_for(controls, lambda c: c["session"] is None and c["button"] == "Start lesson")
    time.sleep(1)
    assert kernel.json(controls)["session"] is None
    kernel.run("page.session_button.click()")
    again = kernel.wait_for(controls, lambda c: c["session"] is not None and c["button"] == "End lesson")
    assert again["session"] != running["session"]
    hub.run(ana.stop())
    kernel.run("page.close()")
