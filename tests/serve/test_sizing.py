"""The default student pool and cap follow the machine and the class; the banner says how long warming takes."""

from __future__ import annotations

import re

import pytest

from smartsession.serve.sizing import (
    KERNEL_BYTES,
    RESERVE_BYTES,
    Machine,
    about,
    default_max_students,
    default_pool_size,
    warm_seconds,
)

GB = 2**30


def test_a_small_two_core_machine_gets_a_pool_it_warms_in_about_two_minutes():
    laptop = Machine(cores=2, memory=16 * GB)
    pool = default_pool_size(laptop, class_size=30)
    assert pool == 24  # not 36: two cores warm about 12 kernels a minute
    assert about(warm_seconds(pool, laptop.cores)) == "about 2 minutes"
    # Memory holds 51 server-mode student kernels: the whole class, and the cap is what memory holds.
    assert default_max_students(laptop) == laptop.kernels_fit == 51
    assert laptop.kernels_fit * KERNEL_BYTES["server", False] <= laptop.memory - RESERVE_BYTES


def test_kernels_that_share_more_fit_more():
    """A browser-mode kernel holds no MediaPipe, a forked one shares its imports: each mode has its measured size."""
    fits = {mode: Machine(2, 16 * GB, kernel_bytes=KERNEL_BYTES[mode]).kernels_fit for mode in KERNEL_BYTES}
    assert fits["server", False] < fits["server", True] < fits["browser", False] < fits["browser", True]
    assert fits["browser", True] == 192
    here = Machine.here("browser", forked=True)
    assert here.kernel_bytes == KERNEL_BYTES["browser", True]


def test_a_big_machine_covers_the_class_and_its_reloads():
    server = Machine(cores=16, memory=64 * GB)
    assert default_pool_size(server, class_size=30) == 36
    assert default_pool_size(server, class_size=10) == 12
    assert default_max_students(server) >= 36


def test_memory_bounds_the_pool_and_the_pages():
    small = Machine(cores=8, memory=4 * GB)
    assert default_pool_size(small, class_size=30) == default_max_students(small) == small.kernels_fit == 10
    tiny = Machine(cores=1, memory=GB)
    assert default_pool_size(tiny, 30) == 1 and default_max_students(tiny) == 1


def test_this_machine_is_read():
    here = Machine.here()
    assert here.cores >= 1 and here.memory > 0


@pytest.mark.parametrize("seconds, words", [(4, "about 10 seconds"), (44, "about 40 seconds"), (96, "about 2 minutes"),
                                            (180, "about 3 minutes")])
def test_durations_read_as_people_say_them(seconds, words):
    assert about(seconds) == words


def test_banner_says_pool_warm_time_and_cap(server):
    log = server.log_text()
    assert "1 student kernel preheating, ready in about 10 seconds on" in log
    assert "the teacher page shows them filling" in log
    # What the cores carry (README's sizing), not only what memory holds (64 here, set by the test server).
    assert re.search(r"About \d+ students measured at full rate on \d+ cores in (browser|server) mode", log)
    assert "pages beyond 64 (--max-students, what memory holds) see a 'class is full' page" in log


def test_teacher_page_carries_the_pool_note_and_its_script_is_served(server):
    page = server.request(server.teacher_url)
    assert page.status == 200
    assert 'src="/smartsession/static/pool-status.js" data-health="/smartsession/health"' in page.text
    script = server.request("smartsession/static/pool-status.js")
    assert script.status == 200 and b"preheated kernels ready" in script.body


def test_the_banner_figure_is_the_one_readme_and_benchmarks_give():
    # serve's banner says cpu_students(); README and docs/BENCHMARKS.md say the same per-core figures.
    from pathlib import Path

    from smartsession.serve.sizing import STUDENTS_PER_CORE

    root = Path(__file__).resolve().parents[2]
    words = (f"{STUDENTS_PER_CORE['server']} server-mode or {STUDENTS_PER_CORE['browser']} browser-mode "
             "students per core")
    readme = " ".join((root / "README.md").read_text().split())
    bench = " ".join((root / "docs" / "BENCHMARKS.md").read_text().split()).replace("~", "")
    assert f"about {words}" in readme and words in bench


def test_the_kernel_manager_holds_the_sockets_of_every_student_memory_admits():
    """libzmq allows 1023 sockets a context by default; serve keeps about eight a student kernel (its manager's
    channels and its page's), so ~125 students filled it and every further page failed ("Too many open files")."""
    import zmq

    from smartsession.serve.pool import QuietRefillKernelManager

    manager = QuietRefillKernelManager()
    sockets = []
    try:
        for _ in range(8 * 250):  # 250 students' worth
            sockets.append(manager.context.socket(zmq.DEALER))
    finally:
        for sock in sockets:
            sock.close(linger=0)
    assert len(sockets) == 2000
