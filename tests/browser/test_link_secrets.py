"""Teacher and join links keep working as links, but their secrets leave the address on first load.

The token moves into an HttpOnly, SameSite=Strict cookie scoped to the page, the address bar loses it, a reload
still opens the page, and no request the page makes carries it (no Referer: Referrer-Policy no-referrer). A reload
presents its page's seat cookie and gets its place back in a full class; another browser does not.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from test_browser_analysis import PAGE_TIMEOUT_MS, name_field

from testkit.serving import running_server

LIVE = '.ss-status[data-status="live"]'


def test_the_teacher_token_moves_from_the_address_into_a_strict_cookie(browser, server):
    token = server.teacher_token
    context = browser.new_context()
    sent_headers: list[dict] = []
    try:
        page = context.new_page()
        page.on("request", lambda r: sent_headers.append({**r.headers, "url": r.url}))
        page.goto(server.teacher_url, timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
        shown = page.url
        [cookie] = [c for c in context.cookies() if c["value"] == token]
        page.reload(timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
        after_reload = page.url
    finally:
        context.close()
    assert token not in shown and parse_qs(urlparse(shown).query) == {"class": [server.class_id]}
    assert token not in after_reload
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/voila/render/teacher.ipynb"
    assert not any(token in h.get("referer", "") for h in sent_headers)
    assert not any(token in h["url"] for h in sent_headers[1:])  # only the link itself, once
    assert server.log_path.read_text().count(token) == 1  # the banner printing the link for the teacher


def test_the_join_code_leaves_the_students_address_and_a_reload_rejoins(browser, server):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
        name_field(page)
        shown = page.url
        page.reload(timeout=PAGE_TIMEOUT_MS)
        name_field(page)  # the page opened again, with the join code from its cookie
        cookies = {c["name"]: c for c in context.cookies()}
    finally:
        context.close()
    assert server.join_code not in shown
    cookie = cookies[f"ss-student-join-{server.class_id}"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


@pytest.mark.slow
def test_a_reload_in_a_full_class_gets_its_seat_back_and_another_browser_does_not(browser, tmp_path):
    # One seat: the first page fills the class. Without its seat the reload was refused until the old
    # kernel's place was noticed free (or culled, minutes later for a page that never closed).
    with running_server(tmp_path, max_students=1) as srv:
        context, stranger = browser.new_context(), browser.new_context()
        try:
            page = context.new_page()
            page.goto(srv.join_url, timeout=PAGE_TIMEOUT_MS)
            name_field(page)
            seat = {c["name"]: c for c in context.cookies()}[f"ss-student-seat-{srv.class_id}"]
            page.reload(timeout=PAGE_TIMEOUT_MS)
            name_field(page)  # the reload got in
            other = stranger.new_page()
            refused = other.goto(srv.join_url, timeout=PAGE_TIMEOUT_MS)
            assert refused.status == 503 and "This class is full" in other.content()
            assert srv.health()["student_kernels"] == {"running": 1, "max": 1}
        finally:
            context.close()
            stranger.close()
    assert seat["httpOnly"] and seat["sameSite"] == "Strict" and seat["expires"] == -1  # gone with the browser


def test_without_the_link_or_its_cookie_the_page_is_refused(server):
    bare = server.url + f"voila/render/teacher.ipynb?class={server.class_id}"
    assert server.request(bare).status == 403
    other = server.request(bare, headers={"Cookie": f"ss-teacher-token-{server.class_id}=forged.token"})
    assert other.status == 403


def test_the_shipped_nginx_config_logs_no_query_string(server, browser):
    from pathlib import Path
    from urllib.parse import urlsplit

    from testkit.processes import Nginx

    site = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "smartsession.conf"
    with Nginx(site, [urlsplit(server.url).netloc]) as proxy:
        parts = urlsplit(server.teacher_url)
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{proxy.url}{parts.path}?{parts.query}", timeout=PAGE_TIMEOUT_MS)
            page.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
            page.reload(timeout=PAGE_TIMEOUT_MS)
            page.wait_for_selector(LIVE, timeout=PAGE_TIMEOUT_MS)
        finally:
            context.close()
        log = (proxy.dir / "smartsession.access.log").read_text()
    assert "/voila/render/teacher.ipynb" in log and log.count("\n") >= 10
    assert server.teacher_token not in log and "?" not in log and "token=" not in log


def test_a_rotated_teacher_link_stops_opening_the_page(server):
    # Last in this module: it replaces the shared server's teacher token.
    from smartsession.hub.client import rotate_teacher_token

    new = rotate_teacher_token(server.url, server.class_id, server.admin_token)
    old = server.request(server.teacher_url)
    assert old.status == 403 and "This teacher link was replaced" in old.text
    fresh = server.request(server.url + new["teacher_path"].lstrip("/"))
    assert fresh.status == 200
