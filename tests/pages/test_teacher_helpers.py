"""The teacher page's pure pieces: token pre-check, join link, QR code, gauge, timeline, card order."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest

from smartsession.hub import auth
from smartsession.pages.alerts import Alert
from smartsession.palette import STATE_COLOURS
from smartsession.pages.teacher import TeacherPage, TokenError, peek_token
from smartsession.pages.teacher_html import (
    alerts_html,
    detail_title_html,
    gauge_html,
    join_html,
    join_url,
    natural_key,
    qr_svg,
    report_html,
    timeline_svg,
)


def test_peek_token_accepts_teacher_tokens_and_explains_the_rest():
    assert peek_token(" " + auth.teacher_token("s", "c1") + "\n").class_id == "c1"
    for token, why in [
        ("", "not a SmartSession token"),
        ("hello", "not a SmartSession token"),
        ("a.b.c", "not a SmartSession token"),
        ("e30.x", "not a SmartSession token"),  # {} signed with nothing: no role at all
        (auth.student_token("s", "c1", "s1"), "not a teacher token"),
        (auth.issue_token("s", "admin"), "not a teacher token"),
        (auth.teacher_token("s", "c1", ttl=-10), "expired"),
    ]:
        with pytest.raises(TokenError, match=why):
            peek_token(token)


def test_join_url_uses_the_host_the_teacher_reached():
    env = {"SERVER_NAME": "10.0.0.5", "SERVER_PORT": "8866", "SCRIPT_NAME": "/voila/render/teacher.ipynb"}
    assert join_url("c1", "abc", env) == "http://10.0.0.5:8866/voila/render/student.ipynb?class=c1&join=abc"
    tls = {**env, "SERVER_NAME": "school.example", "SERVER_PORT": "443", "SMARTSESSION_HUB_URL": "https://127.0.0.1:443"}
    assert join_url("c1", "abc", tls) == "https://school.example/voila/render/student.ipynb?class=c1&join=abc"
    v6 = {**env, "SERVER_NAME": "::1", "SCRIPT_NAME": "/base/voila/render/teacher.ipynb"}
    assert join_url("c1", "a b", v6) == "http://[::1]:8866/base/voila/render/student.ipynb?class=c1&join=a+b"
    assert join_url("c1", "abc", {}) is None


def test_qr_code_is_inline_svg():
    svg = qr_svg("http://10.0.0.5:8866/voila/render/student.ipynb?class=c1&join=abc")
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg") and "http" not in svg.split(">", 1)[1].replace("http://www.w3.org", "")


def test_gauge_and_timeline_draw_without_data():
    assert 'data-engagement=""' in gauge_html(None)
    assert 'data-engagement="100"' in gauge_html(130.0)
    assert timeline_svg([]) == "<i>No states yet.</i>"
    now = time.time()
    svg = timeline_svg([(now, 80.0, "focused"), (now + 1, 10.0, "away")])
    # Each point carries its state's symbol (shape) as well as its colour, and the svg its numbers in words.
    assert ">●</text>" in svg and ">✕</text>" in svg and STATE_COLOURS["focused"] in svg
    assert 'role="img"' in svg and "engagement now 10, between 10 and 80" in svg


def test_cards_sort_naturally():
    labels = ["Sim student 10", "Sim student 2", "ana", "Ben"]
    assert sorted(labels, key=natural_key) == ["ana", "Ben", "Sim student 2", "Sim student 10"]


HOSTILE = '"><script>alert(1)</script><b a=\'x'


def test_everything_typed_by_someone_is_escaped_in_the_markup():
    """Student names, alert text, ids, links and the report document never become markup of the page."""
    markup = "".join([
        detail_title_html(HOSTILE, HOSTILE, "connected", HOSTILE),
        alerts_html([Alert("k", "student", time.time(), f"{HOSTILE} has been away", HOSTILE)]),
        join_html("http://h/?class=c1&join=" + HOSTILE),
        report_html(HOSTILE, f"<html>{HOSTILE}</html>"),
    ])
    assert "<script>" not in markup and "<b a=" not in markup
    assert markup.count("&lt;script&gt;") == 11  # each place a value is shown: 3 + 3 + 3 + 2
    tags = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: tags.append(tag)
    parser.feed(markup)
    assert "script" not in tags and "b" in tags  # the page's own <b> stays, the typed one is text



@pytest.mark.slow
def test_without_a_token_the_page_offers_only_the_form():
    with TeacherPage(environ={}) as page:
        assert page.view is None and page.status == "idle"
        assert page.form.layout.display is None and page.dashboard.layout.display == "none"
        page.token_input.value = auth.student_token("s", "c1", "s1")
        page.token_button.click()
        assert page.status == "error" and "not a teacher token" in page.status_line.value
        assert page.view is None
    page.close()  # closing again is harmless
