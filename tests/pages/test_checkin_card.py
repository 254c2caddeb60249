"""The student's check-in card without a browser: escaped text, one answer, calm closing, no focus taken."""

from __future__ import annotations

from smartsession.pages.checkin_card import RESEARCH_CONSENT, CheckinCard, question_html


def event(**kw):
    return {"type": "checkin", "checkin_id": "ck1", "question": "<script>x()</script> ok?",
            "options": ["<b>yes</b>", "no"], "closes": 1060.0, **kw}


def test_the_question_is_escaped_and_says_answering_is_optional():
    text = question_html(event(), now=1000.0)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "Optional" in text and "60 s" in text
    assert "used for research" in RESEARCH_CONSENT and "never pictures" in RESEARCH_CONSENT


def test_the_card_sends_one_answer_announces_and_closes():
    sent, said = [], []
    card = CheckinCard(lambda cid, option: sent.append((cid, option)) or True, said.append)
    card.handle(event())
    assert card.box.layout.display is None
    assert [b.description for b in card.buttons.children] == ["<b>yes</b>", "no"]  # plain text in a button
    assert said[-1].startswith("Your teacher asks:")
    card.buttons.children[1].click()
    assert sent == [("ck1", 1)] and all(b.disabled for b in card.buttons.children)
    card.handle({"type": "answer_ok", "checkin_id": "ck1"})
    assert "sent" in card.status.value and said[-1].startswith("Thank you")
    card.handle({"type": "checkin_closed", "checkin_id": "ck1"})
    assert card.box.layout.display == "none"
    card.handle(event(checkin_id="ck2", answered=True))  # a reconnect: the welcome says it was answered
    assert card.buttons.children == () or list(card.buttons.children) == []
    assert "already" in card.status.value
    card.dismiss.click()
    assert card.box.layout.display == "none"


def test_after_the_lesson_ended_the_student_is_told_what_the_teacher_really_sees():
    from smartsession.pages.student import teacher_view_html

    text = teacher_view_html(None, ended=True)
    assert "disconnected" in text and "paused" not in text
