"""The lock-down and pool rules as plain code: page access, log redaction, offline pages, the refill gate.

No server here; the gate test starts one real kernel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from smartsession.hub import auth
from smartsession.serve.lockdown import (
    FONT_AWESOME_CSS,
    PageRefused,
    RedactingFilter,
    check_page_access,
    offline_html,
    redact,
)
from smartsession.serve.pool import QuietRefillKernelManager

SECRET = "s" * 64


def test_teacher_page_access_matrix():
    teacher = auth.teacher_token(SECRET, "c1")
    allowed = [
        {"class": "c1", "token": teacher},
        {"class": "c2", "token": auth.issue_token(SECRET, "admin")},
    ]
    refused = [
        {},
        {"class": "c1"},
        {"class": "c2", "token": teacher},
        {"class": "c1", "token": auth.teacher_token("another secret", "c1")},
        {"class": "c1", "token": auth.teacher_token(SECRET, "c1", ttl=-1)},
        {"class": "c1", "token": auth.student_token(SECRET, "c1", "s1")},
        {"class": "c1", "token": auth.join_code(SECRET, "c1")},
        {"class": "c1", "join": auth.join_code(SECRET, "c1")},
    ]
    for arguments in allowed:
        check_page_access(SECRET, "teacher.ipynb", arguments)
    for arguments in refused:
        with pytest.raises(PageRefused) as refusal:
            check_page_access(SECRET, "teacher.ipynb", arguments)
        assert "link" in str(refusal.value) or "token" in str(refusal.value), arguments


def test_student_page_access_matrix():
    check_page_access(SECRET, "student.ipynb", {"class": "c1", "join": auth.join_code(SECRET, "c1")})
    check_page_access(SECRET, "student.ipynb", {"class": "c1", "token": auth.student_token(SECRET, "c1", "s1")})
    for arguments in (
        {},
        {"class": "c1"},
        {"class": "c1", "join": auth.join_code(SECRET, "c2")},
        {"class": "c2", "token": auth.student_token(SECRET, "c1", "s1")},
        {"class": "c1", "token": "garbage"},
    ):
        with pytest.raises(PageRefused, match="link"):
            check_page_access(SECRET, "student.ipynb", arguments)
    with pytest.raises(PageRefused):
        check_page_access(SECRET, "secret.ipynb", {"class": "c1", "join": auth.join_code(SECRET, "c1")})


def test_redaction_hides_tokens_and_join_codes_only():
    line = "200 GET /voila/render/teacher.ipynb?class=c1&token=abc.def (10.0.0.5) 3ms /s?join=k2j&x=1"
    assert redact(line) == (
        "200 GET /voila/render/teacher.ipynb?class=c1&token=[redacted] (10.0.0.5) 3ms /s?join=[redacted]&x=1"
    )
    record = logging.LogRecord("tornado.general", logging.WARNING, __file__, 1, "bad %s", ("/x?token=zz",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "bad /x?token=[redacted]"


def test_offline_html_swaps_cdn_icons_and_drops_the_diagram_loader():
    head = (
        '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/all.min.css"'
        ' type="text/css" />\n'
        '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/v4-shims.min.css"'
        ' type="text/css" />\n'
        '<script type="module">\n  const d = document.querySelectorAll(".jp-Mermaid > pre.mermaid");\n'
        '  await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs");\n</script>\n'
        '<script>keep()</script>'
    )
    out = offline_html(head, "/base/")
    assert "https://" not in out
    assert out.count(f'href="/base/{FONT_AWESOME_CSS}"') == 1
    assert "<script>keep()</script>" in out


def test_pool_refills_wait_for_quiet_but_cold_kernels_do_not():
    async def main():
        km = QuietRefillKernelManager(refill_quiet=3.0)
        try:
            km.note_demand()
            start = time.monotonic()
            cold = await km.start_kernel(kernel_name="python3", env={**os.environ, "VOILA_PREHEAT": "False"})
            cold_wait = time.monotonic() - start
            km.note_demand()
            start = time.monotonic()
            refill = await km.start_kernel(kernel_name="python3", env={**os.environ, "VOILA_PREHEAT": "True"})
            refill_wait = time.monotonic() - start
            assert refill_wait >= 3.0
            # A cold kernel is the page a student is waiting for: it never waits for quiet.
            assert cold_wait < 3.0 or cold_wait < refill_wait - 2.5
            assert {cold, refill} <= set(km.list_kernel_ids())
        finally:
            await km.shutdown_all(now=True)

    asyncio.run(main())
