"""Teacher page GETs start kernels (~155 MB each): capped per teacher link and in total, and a page that never
connects gives its kernel back like a student's. A loop of GETs with one token, no browser, gets 429s."""

from __future__ import annotations

import time

import pytest

from smartsession.hub.client import create_class
from testkit.serving import running_server


def eventually(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


@pytest.mark.slow
def test_teacher_pages_are_capped_per_link_and_in_total_and_unused_ones_are_culled(tmp_path, dashboards):
    with running_server(tmp_path, pool_size=0, dashboards=dashboards, max_teacher_pages=3,
                        max_teacher_pages_per_link=2, connect_timeout=20) as srv:
        running = lambda: srv.health()["teacher_kernels"]["running"]  # noqa: E731
        statuses = [srv.request(srv.teacher_url).status for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        refused = srv.request(srv.teacher_url)
        assert "This teacher link has too many pages open" in refused.text and refused.headers["Retry-After"] == "60"
        other = create_class(srv.url, "Second", srv.admin_token)
        third = create_class(srv.url, "Third", srv.admin_token)
        assert srv.request(srv.url + other["teacher_path"].lstrip("/")).status == 200
        full = srv.request(srv.url + third["teacher_path"].lstrip("/"))
        assert full.status == 503 and "Too many teacher pages are open" in full.text
        assert running() == 3
        # None of them ever connected: their kernels go, their places come back.
        eventually(lambda: running() == 0, 90, "unconnected teacher pages kept their kernels")
        assert srv.request(srv.url + third["teacher_path"].lstrip("/")).status == 200
