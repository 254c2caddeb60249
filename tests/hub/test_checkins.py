"""Check-ins through a real hub on 127.0.0.1: a teacher asks, students answer, the hub tallies and stores; and
the hostile cases (unknown or closed check-ins, second answers, floods across reconnects, forged roles, markup)."""

from __future__ import annotations

import asyncio
import json

import pytest

from smartsession.hub.checkins import CheckinBook, CheckinLimits, CheckinRefused
from smartsession.hub.client import HubError, StudentPublisher, TeacherSubscriber
from smartsession.hub.protocol import CloseCode
from smartsession.hub.standalone import running_hub
from smartsession.schema import CheckinAnswer, CheckinAsk, SchemaError


def run(coro, timeout: float = 180):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ask(**kw) -> dict:
    return {"type": "ask", "v": 1, "kind": "custom", "question": "Which part?", "options": ["a", "b"], **kw}


# --- the schema and the book, without sockets ---


def test_asks_are_validated_before_anything_is_kept():
    assert CheckinAsk.from_dict({"type": "ask", "v": 1, "kind": "mind"}).options == (
        "on the lesson", "somewhere else")
    markup = CheckinAsk.from_dict(ask(question="<script>alert(1)</script>", options=["<b>x</b>", "<img src=x>"]))
    assert markup.question == "<script>alert(1)</script>"  # kept as text; every page escapes it
    for bad, words in [
        (ask(options=["only one"]), "2-5 options"),
        (ask(options=list("abcdef")), "2-5 options"),
        (ask(options=["a", "a"]), "differ"),
        (ask(question="x" * 1_000_000), "at most 200"),
        (ask(options=["a", "b" * 41]), "1-40"),
        (ask(question="a\x00b"), "control"),
        (ask(question=" "), "1-200"),
        ({"type": "ask", "v": 1, "kind": "mind", "question": "own words"}, "takes no question"),
        (ask(kind="poll"), "kind must be"),
        (ask(seconds=1), "seconds must be between"),
        (ask(research="yes"), "research must be"),
        (ask(extra=1), "unknown field"),
    ]:
        with pytest.raises(SchemaError, match=words):
            CheckinAsk.from_dict(bad)
    for bad in [{"option": -1}, {"option": 5}, {"option": True}, {"option": 1.0}, {"checkin_id": "<x>"}]:
        with pytest.raises(SchemaError):
            CheckinAnswer.from_dict({"type": "answer", "v": 1, "checkin_id": "ck1", "option": 0, **bad})


def test_the_book_takes_one_answer_per_student_and_closes_on_time():
    book = CheckinBook(CheckinLimits(checkin_min_interval=10, max_checkins_per_session=2))
    sense = CheckinAsk.from_dict({"type": "ask", "v": 1, "kind": "sense", "seconds": 30})
    with pytest.raises(CheckinRefused, match="no session"):
        book.ask(sense, None, None, 1000.0, 0.0)
    [event] = book.ask(sense, "s1", "seg1", 1000.0, 0.0)
    assert (event["checkin_id"], event["closes"], event["segment"]) == ("ck1", 1030.0, "seg1")
    assert book.answer("ada", CheckinAnswer("ck1", 2), 1001.0)["counts"] == [0, 0, 1]
    for student, answer, words in [("ada", CheckinAnswer("ck1", 0), "already answered"),
                                   ("bob", CheckinAnswer("ck9", 0), "no check-in ck9"),
                                   ("bob", CheckinAnswer("ck1", 3), "option must be 0-2")]:
        with pytest.raises(CheckinRefused, match=words):
            book.answer(student, answer, 1002.0)
    with pytest.raises(CheckinRefused, match="wait"):
        book.ask(sense, "s1", None, 1005.0, 5.0)
    assert book.due(1029.0) is None
    closed = book.due(1030.0)
    assert (closed["type"], closed["counts"], closed["answered"]) == ("checkin_closed", [0, 0, 1], 1)
    with pytest.raises(CheckinRefused, match="ck1 is closed"):
        book.answer("bob", CheckinAnswer("ck1", 0), 1031.0)
    book.ask(sense, "s1", None, 1040.0, 40.0)
    with pytest.raises(CheckinRefused, match="had 2 check-ins"):
        book.ask(sense, "s1", None, 1060.0, 60.0)


# --- through the hub ---


def test_a_check_in_reaches_students_the_tally_reaches_the_teacher_and_the_store_keeps_both(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path, checkin_min_interval=0.5) as (hub, url):
            info = hub.create_class("Check-ins")
            cid = info["class_id"]
            seen: dict[str, list] = {"ada": [], "bob": []}
            events = []
            async with TeacherSubscriber(cid, info["teacher_token"], url=url, on_event=events.append) as teacher:
                await teacher.wait_snapshot(30)
                ada = await StudentPublisher.join(url, cid, info["join_code"], "Ada", on_checkin=seen["ada"].append)
                bob = await StudentPublisher.join(url, cid, info["join_code"], "Bob", on_checkin=seen["bob"].append)
                async with ada, bob:
                    await ada.wait_connected(30)
                    await bob.wait_connected(30)
                    await teacher.send_command("start_segment", title="Optics")
                    result = await teacher.ask("mind", seconds=30, research=True)
                    ck = result["checkin_id"]
                    await kit.eventually(lambda: seen["ada"] and seen["bob"])
                    question = seen["ada"][0]
                    assert (question["checkin_id"], question["question"], question["segment"]) == (
                        ck, "Where was your mind just now?", "seg1")
                    assert ada.answer(ck, 0, research=True)
                    await kit.eventually(lambda: any(m["type"] == "answer_ok" for m in seen["ada"]))
                    ada.answer(ck, 1)  # a second answer: refused, the first stands
                    await kit.eventually(lambda: any(m["type"] == "answer_refused" for m in seen["ada"]))
                    refused = next(m for m in seen["ada"] if m["type"] == "answer_refused")
                    assert "already answered" in refused["reason"]
                    await kit.eventually(lambda: any(e["type"] == "answered" for e in events))
                    tally = [e for e in events if e["type"] == "answered"][-1]
                    assert (tally["counts"], tally["answered"]) == ([1, 0], 1)
                    # A reconnecting student learns the open check-in, and that it has not answered yet.
                    async with TeacherSubscriber(cid, info["teacher_token"], url=url) as late:
                        snap = await late.wait_snapshot(30)
                    assert late.snapshot is snap
                    await teacher.send_command("end_session")
                    await kit.eventually(lambda: any(m["type"] == "checkin_closed" for m in seen["bob"]))
            hub.store.flush()
            session = hub.store.sessions(cid).session_id.iloc[-1]
            checkins = hub.store.checkins(session)
            assert list(checkins.checkin_id) == [ck] and checkins.closed.notna().all()
            assert checkins.research.all() and checkins.segment.iloc[0] == "seg1"
            answers = hub.store.answers(session)
            assert list(zip(answers.student_id, answers.option, answers.research)) == [(ada.student_id, 0, True)]

    run(main())


def test_hostile_check_in_traffic_is_refused_cleanly_and_the_others_are_unaffected(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path, checkin_min_interval=0.2, rate=5, burst=10) as (hub, url):
            info = hub.create_class("Hostile")
            cid = info["class_id"]
            t_ws, _ = await kit.teacher(url, info)
            ws, joined, welcome = await kit.student(url, info, "Mallory")
            ok_ws, ok_joined, _ = await kit.student(url, info, "Olive")
            assert welcome["checkin"] is None
            # Answers to a check-in that does not exist: a reply, no close, nothing stored.
            await ws.send(json.dumps({"type": "answer", "v": 1, "checkin_id": "ck1", "option": 0}))
            reply = await kit.until(ws, lambda m: m["type"] == "answer_refused")
            assert "no check-in ck1" in reply["reason"]
            # Markup in a custom question and options travels as text.
            await t_ws.send(json.dumps({**ask(question="<script>x()</script>", options=["<b>1</b>", "2"]), "id": 1}))
            result = await kit.until(t_ws, lambda m: m["type"] == "result")
            assert result["ok"], result
            question = await kit.until(ok_ws, lambda m: m["type"] == "checkin")
            assert question["question"] == "<script>x()</script>" and question["options"][0] == "<b>1</b>"
            # A long question is refused by size before it is parsed (a 1 MB one by the transport's cap, 1009).
            await t_ws.send(json.dumps(ask(question="x" * 5000)))
            assert (await kit.closed_with(t_ws))[0] == CloseCode.TOO_BIG
            t_ws, _ = await kit.teacher(url, info)
            await t_ws.send(json.dumps(ask(question="x" * 1_000_000)))
            assert (await kit.closed_with(t_ws))[0] in (CloseCode.TOO_BIG, 1009)
            # A flood of answers across reconnects: one is taken, the budget holds for the student, not the socket.
            codes = []
            for _ in range(4):
                for _ in range(12):
                    try:
                        await ws.send(json.dumps({"type": "answer", "v": 1, "checkin_id": "ck1", "option": 0}))
                    except Exception:
                        break
                codes.append((await kit.closed_with(ws))[0])
                ws = await kit.connect(url, f"/smartsession/ws/student/{cid}/{joined['student_id']}")
                again = await kit.hello(ws, joined["token"])
                if again["type"] == "welcome":
                    assert again["checkin"]["answered"] is True
            assert CloseCode.RATE_LIMITED in codes
            # A student sending a question is refused as a forged role.
            ws2, _, _ = await kit.student(url, info, "Eve")
            await ws2.send(json.dumps({**ask(), "id": 2}))
            assert (await kit.closed_with(ws2))[0] == CloseCode.FORBIDDEN
            # The well-behaved student still answers, once.
            await ok_ws.send(json.dumps({"type": "answer", "v": 1, "checkin_id": "ck1", "option": 1}))
            assert (await kit.until(ok_ws, lambda m: m["type"].startswith("answer")))["type"] == "answer_ok"
            hub.store.flush()
            session = hub.store.sessions(cid).session_id.iloc[-1]
            answers = hub.store.answers(session)
            assert sorted(answers.student_id) == sorted([joined["student_id"], ok_joined["student_id"]])
            assert answers.groupby("student_id").size().max() == 1
            # Answers after the close: refused as closed.
            t2, _ = await kit.teacher(url, info)
            await t2.send(json.dumps({"type": "command", "v": 1, "command": "end_session", "id": 3}))
            await kit.until(ok_ws, lambda m: m["type"] == "checkin_closed")
            await ok_ws.send(json.dumps({"type": "answer", "v": 1, "checkin_id": "ck1", "option": 0}))
            reply = await kit.until(ok_ws, lambda m: m["type"] == "answer_refused")
            assert "closed" in reply["reason"]
            for w in (ws, ws2, ok_ws, t2):
                await w.close()

    run(main())


def test_the_teacher_is_told_why_a_check_in_was_refused(tmp_path):
    async def main():
        async with running_hub(data_dir=tmp_path, checkin_min_interval=60) as (hub, url):
            info = hub.create_class("Too soon")
            async with TeacherSubscriber(info["class_id"], info["teacher_token"], url=url) as teacher:
                await teacher.wait_snapshot(30)
                # A teacher's page alone opens no lesson: the teacher starts it (or the first student joins).
                with pytest.raises(HubError, match="start the lesson first"):
                    await teacher.ask("sense")
                await teacher.send_command("start_session")
                await teacher.ask("sense")
                with pytest.raises(HubError, match="wait"):
                    await teacher.ask("sense")
                with pytest.raises(SchemaError, match="2-5 options"):
                    await teacher.ask("custom", question="?", options=["one"])

    run(main())
