"""Student kernels are capped and pages that never connect lose their kernel: GETs of the join link cannot
exhaust the machine (each page's kernel holds ~400 MB with the real page).

The bookkeeping is pure and tested with a clock of our own; then a real `smartsession serve` on 127.0.0.1
refuses pages beyond its caps with a "class is full" page, and shuts down kernels whose page never connects.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect

from smartsession.serve.admission import Refused, StudentKernels, TeacherKernels
from testkit.serving import kernel_id, running_server

from servekit import cookie_value, kernel_message, load_page


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_admission_caps_pages_in_total_and_per_address():
    kernels = StudentKernels(max_total=3, max_per_address=2, connect_timeout=30)
    a1, a2 = kernels.admit("10.0.0.1"), kernels.admit("10.0.0.1")
    with pytest.raises(Refused) as per_address:
        kernels.admit("10.0.0.1")
    assert per_address.value.status == 429 and "try again in a minute" in per_address.value.title
    kernels.admit("10.0.0.2")
    with pytest.raises(Refused) as full:
        kernels.admit("10.0.0.3")
    assert full.value.status == 503 and full.value.title == "This class is full, try again in a minute"
    # A page whose rendering failed before it had a kernel frees its place at once.
    kernels.served(a1)
    assert len(kernels) == 2 and kernels.admit("10.0.0.3")
    # A page whose kernel is gone (closed tab, culled) frees its place once the server notices.
    a2.kernel_id = "k2"
    kernels.served(a2)
    kernels.keep_only(["other"])
    assert kernels.from_address("10.0.0.1") == 0 and kernels.admit("10.0.0.1")


def test_limits_of_zero_mean_no_limit():
    kernels = StudentKernels(max_total=0, max_per_address=0, connect_timeout=30)
    for _ in range(100):
        kernels.admit("10.0.0.1")
    assert kernels.counts() == {"running": 100, "max": 0}


def test_only_served_pages_that_never_connected_are_named_after_the_timeout():
    clock = Clock()
    kernels = StudentKernels(max_total=10, max_per_address=10, connect_timeout=30, clock=clock)
    rendering, silent, live = (kernels.admit("10.0.0.1") for _ in range(3))
    rendering.kernel_id, silent.kernel_id, live.kernel_id = "k-rendering", "k-silent", "k-live"
    kernels.served(silent)
    kernels.served(live)
    kernels.connected("k-live")
    clock.now += 30
    assert kernels.unconnected() == []
    clock.now += 0.5
    # Still rendering (a cold kernel importing MediaPipe) is not "never connected"; a live page is kept
    # even after it disconnects (the idle cull handles closed tabs).
    assert kernels.unconnected() == ["k-silent"]


def test_a_reload_presenting_its_seat_takes_its_place_over_and_nobody_else_can():
    kernels = StudentKernels(max_total=2, max_per_address=1, connect_timeout=30)
    ada, bob = kernels.admit("10.0.0.1", "c1"), kernels.admit("10.0.0.2", "c1")
    ada.kernel_id, bob.kernel_id = "k-ada", "k-bob"
    with pytest.raises(Refused) as still:  # Ada's page is still rendering: its kernel could not be shut down yet
        kernels.reclaim(ada.seat, "10.0.0.1", "c1")
    assert still.value.status == 429 and still.value.retry_after == 5
    kernels.served(ada)
    kernels.served(bob)
    # Unknown, forged, another class's or empty seats take nothing over: such a request is admitted as any other.
    for seat, class_id in (("x" * 32, "c1"), (ada.seat + "x", "c1"), (ada.seat, "c2"), ("", "c1"), ("ä€", "c1")):
        assert kernels.reclaim(seat, "10.0.0.3", class_id) is None
    with pytest.raises(Refused):
        kernels.admit("10.0.0.3", "c1")
    # Ada's reload gets her place back, with a new seat; her old kernel is named to be shut down.
    ticket, replaced = kernels.reclaim(ada.seat, "10.0.0.1", "c1")
    assert replaced == "k-ada" and ticket.seat != ada.seat and len(kernels) == 2
    # It stays the same student to the hub (the id its kernel's seat token names); every other page is another.
    assert ticket.student_id == ada.student_id != bob.student_id
    assert kernels.from_address("10.0.0.1") == 1
    # The old seat is spent: presented again (a copy of the cookie) it holds nothing.
    assert kernels.reclaim(ada.seat, "10.0.0.1", "c1") is None
    # A reload from another device still keeps that device's own cap.
    ticket.kernel_id = "k-ada2"
    kernels.served(ticket)
    with pytest.raises(Refused) as per_address:
        kernels.reclaim(ticket.seat, "10.0.0.2", "c1")
    assert per_address.value.status == 429
    assert len(kernels) == 2


def test_a_reloaded_teacher_page_takes_its_place_over_within_its_links_cap():
    teachers = TeacherKernels(max_total=1, max_per_address=1, connect_timeout=30)
    page = teachers.admit("token-a", "c1")
    page.kernel_id = "k-1"
    teachers.served(page)
    with pytest.raises(Refused):
        teachers.admit("token-a", "c1")  # the link's one page is open, and the server's one
    ticket, replaced = teachers.reclaim(page.seat, "token-a", "c1")
    assert replaced == "k-1" and len(teachers) == 1
    # The same browser opening the class's new link (after rotate-token): its place moves to that link's count.
    ticket.kernel_id = "k-2"
    teachers.served(ticket)
    moved, replaced = teachers.reclaim(ticket.seat, "token-b", "c1")
    assert replaced == "k-2" and (teachers.from_address("token-a"), teachers.from_address("token-b")) == (0, 1)


# --- a real server ---


def kernel_processes(server) -> int:
    """Kernel processes the server started (its children running ipykernel)."""
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server.process.pid and b"ipykernel" in cmdline:
            count += 1
    return count


def get_from(server, address: str, url: str, timeout: float = 180.0):
    """GET ``url`` from a given loopback source address (students on different laptops)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, source_address=(address, 0))
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def eventually(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


@pytest.fixture(scope="module")
def capped(tmp_path_factory, dashboards):
    """No pool, two student pages at once, one per address, three seconds to connect."""
    with running_server(
        tmp_path_factory.mktemp("capped"), pool_size=0, dashboards=dashboards,
        max_students=2, max_per_address=1, connect_timeout=3,
    ) as srv:
        yield srv


@pytest.mark.slow
def test_join_link_beyond_the_caps_gets_the_class_full_page_and_kernels_stay_bounded(capped):
    assert capped.health()["student_kernels"] == {"running": 0, "max": 2}
    running = lambda: capped.health()["student_kernels"]["running"]  # noqa: E731
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(get_from, capped, "127.0.0.1", capped.join_url)
        eventually(lambda: running() == 1, 30, "the first page was not admitted")
        # Four more from the same address while its page renders: one device, one place.
        again = list(pool.map(lambda _: get_from(capped, "127.0.0.1", capped.join_url), range(4)))
        second = pool.submit(get_from, capped, "127.0.0.2", capped.join_url)
        eventually(lambda: running() == 2, 30, "the second address was not admitted")
        # A third address while both pages still render: the class is full.
        status, headers, body = get_from(capped, "127.0.0.3", capped.join_url)
        assert first.result()[0] == 200 and second.result()[0] == 200
    assert [r[0] for r in again] == [429] * 4
    assert again[0][1]["Retry-After"] == "60" and "Close the other SmartSession tabs" in again[0][2]
    assert status == 503 and headers["Retry-After"] == "60"
    assert headers["Content-Type"].startswith("text/html")
    assert "<html lang='en'>" in body and "<h1>This class is full, try again in a minute</h1>" in body
    assert "<title>This class is full, try again in a minute</title>" in body
    assert "http://" not in body and "https://" not in body  # self-contained
    assert kernel_processes(capped) <= 2
    # Neither page ever connects: their kernels go within the timeout (3 s, checked every second).
    served = time.monotonic()
    eventually(lambda: kernel_processes(capped) == 0, 30, "unconnected kernels were not shut down")
    assert time.monotonic() - served < 20
    # The count follows on the next sweep (every second here).
    eventually(lambda: running() == 0, 10, "the admission count did not follow the shut-down kernels")
    assert "its page did not connect within 3 s" in capped.log_text()
    # Their places are free again.
    page = get_from(capped, "127.0.0.3", capped.join_url)
    assert page[0] == 200
    eventually(lambda: kernel_processes(capped) == 0, 30, "the last page's kernel stayed")


def test_a_page_that_connects_keeps_its_kernel(capped):
    eventually(lambda: capped.health()["student_kernels"]["running"] == 0, 30, "earlier pages still hold places")
    status, _, body = get_from(capped, "127.0.0.4", capped.join_url)
    assert status == 200
    kid = kernel_id(body)
    url = capped.url.replace("http", "ws", 1) + f"api/kernels/{kid}/channels"
    with connect(url, open_timeout=30, max_size=None) as ws:
        ws.send(json.dumps(kernel_message("kernel_info_request", {})))
        while json.loads(ws.recv(timeout=30))["msg_type"] != "kernel_info_reply":
            pass
        time.sleep(6)  # twice the connect timeout
        assert capped.request(f"api/kernels/{kid}").status == 200
    assert capped.health()["student_kernels"]["running"] == 1
    assert capped.shutdown_kernel(kid) == 204
    eventually(lambda: capped.health()["student_kernels"]["running"] == 0, 30, "a closed page still holds its place")


def test_connect_timeout_above_a_minute_is_refused(tmp_path, dashboards):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "smartsession", "serve", "--connect-timeout", "300", "--dashboards", str(dashboards),
         "--data-dir", str(tmp_path / "data"), "--port", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode != 0
    assert "--connect-timeout must be more than 0 and at most 60 seconds" in result.stderr + result.stdout


def test_pool_refills_wait_while_memory_holds_no_more_kernels():
    import asyncio

    from smartsession.serve.pool import QuietRefillKernelManager

    async def scenario():
        manager = QuietRefillKernelManager(refill_quiet=0)
        manager.kernel_budget = 1
        page = await manager.start_kernel(kernel_name="python3")
        preheat = {**os.environ, "VOILA_PREHEAT": "True"}
        refill = asyncio.ensure_future(manager.start_kernel(kernel_name="python3", env=preheat))
        await asyncio.sleep(3)
        assert not refill.done() and len(manager) == 1, "a refill started beyond the machine's memory"
        await manager.shutdown_kernel(page)
        pooled = await asyncio.wait_for(refill, 60)
        assert manager.list_kernel_ids() == [pooled]
        await manager.shutdown_kernel(pooled)

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_pool_kernel_whose_page_never_connects_is_shut_down_too(tmp_path, dashboards):
    with running_server(tmp_path, pool_size=1, dashboards=dashboards, connect_timeout=2, refill_quiet=60) as srv:
        srv.wait_warm(180)
        page = srv.request(srv.join_url)
        assert page.status == 200
        kid = kernel_id(page.text)
        assert f"Using pre-heated kernel: {kid}" in srv.log_text()
        assert srv.health()["student_kernels"]["running"] == 1
        eventually(lambda: f"Closing kernel {kid}: its page did not connect" in srv.log_text(), 30,
                   "the pool kernel handed to a page that never connected was kept")
        eventually(lambda: srv.request(f"api/kernels/{kid}").status == 404, 30, "the kernel is still running")
        assert srv.health()["student_kernels"]["running"] == 0


def test_pool_kernels_warm_a_few_at_a_time_and_keep_a_core_for_pages_once_they_come():
    import asyncio

    from smartsession.serve.pool import QuietRefillKernelManager

    async def scenario():
        manager = QuietRefillKernelManager(refill_quiet=0)
        manager.warm_slots = 2
        preheat = {**os.environ, "VOILA_PREHEAT": "True"}
        # Plain kernels never ask for a page request (no notebook runs in them): each holds its slot until gone.
        first = await asyncio.wait_for(manager.start_kernel(kernel_name="python3", env=preheat), 60)
        second = await asyncio.wait_for(manager.start_kernel(kernel_name="python3", env=preheat), 60)
        third = asyncio.ensure_future(manager.start_kernel(kernel_name="python3", env=preheat))
        await asyncio.sleep(3)
        assert not third.done() and len(manager) == 2, "a third pool kernel warmed beside two on two slots"
        await manager.shutdown_kernel(first)
        third_id = await asyncio.wait_for(third, 60)
        # A class is arriving: one slot stays free for its pages, so the next refill waits for one to end.
        manager.note_demand()
        fourth = asyncio.ensure_future(manager.start_kernel(kernel_name="python3", env=preheat))
        await manager.shutdown_kernel(second)
        await asyncio.sleep(3)
        assert not fourth.done(), "a refill warmed beside another while pages were being asked for"
        await manager.shutdown_kernel(third_id)
        fourth_id = await asyncio.wait_for(fourth, 60)
        await manager.shutdown_kernel(fourth_id)

    asyncio.run(scenario())


def test_the_activity_watch_reads_headers_and_refuses_what_is_not_a_jupyter_message():
    from jupyter_client.session import Session

    from smartsession.serve.pool import activity_of

    session = Session(key=b"k")
    parent = session.msg("comm_msg", {"comm_id": "c", "data": {}})
    status = session.serialize(session.msg("status", {"execution_state": "idle"}, parent=parent), ident=b"status")
    assert activity_of(status) == ("status", "comm_msg", "idle")
    out = session.serialize(session.msg("comm_msg", {"comm_id": "c", "data": {"x": 1}}), ident=b"comm")
    assert activity_of(out) == ("comm_msg", None, None)
    for bad in ([b"no delimiter"], [b"<IDS|MSG>", b"sig", b"{not json"], [b"<IDS|MSG>", b"sig", b"[]", b"{}"],
                [b"<IDS|MSG>", b"sig", b'{"msg_type": "status"}', b"{}", b"{}"]):
        with pytest.raises(ValueError):
            activity_of(bad)


def test_a_kernel_of_the_server_reports_its_activity_and_state_as_jupyter_does():
    import asyncio

    from smartsession.serve.pool import QuietRefillKernelManager

    async def scenario():
        manager = QuietRefillKernelManager(refill_quiet=0)
        kid = await manager.start_kernel(kernel_name="python3")
        kernel = manager.get_kernel(kid)
        try:
            client = kernel.client()
            client.start_channels()
            await asyncio.wait_for(client.wait_for_ready(timeout=60), 70)
            before = kernel.last_activity
            await asyncio.sleep(0.05)
            client.execute("import time; time.sleep(1.5)")
            for _ in range(100):
                if kernel.execution_state == "busy":
                    break
                await asyncio.sleep(0.01)
            assert kernel.execution_state == "busy", "the watch did not see the kernel go busy"
            for _ in range(100):  # the status arrives on the watch's own socket, maybe just after the reply
                if kernel.execution_state == "idle" and kernel.last_activity > before:
                    break
                await asyncio.sleep(0.05)
            assert kernel.execution_state == "idle"
            assert kernel.last_activity > before
            client.stop_channels()
        finally:
            await manager.shutdown_kernel(kid)

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_bare_websocket_holds_no_seat_and_one_address_holds_at_most_its_share(tmp_path, dashboards):
    # Four seats, half of them per address: a third page at once from one address is refused, not the class.
    with running_server(tmp_path, pool_size=0, dashboards=dashboards, max_students=4, max_address_share=0.5,
                        seat_timeout=10) as srv:
        with ThreadPoolExecutor(3) as pool:
            pages = list(pool.map(lambda _: get_from(srv, "127.0.0.1", srv.join_url), range(3)))
        assert sorted(p[0] for p in pages) == [200, 200, 429]
        # Connected by a bare websocket that never brings a widget up: the kernel goes after the seat timeout
        # (the connect timeout, 30 s, spares connected pages), and its seat with it.
        kid = kernel_id(next(p for p in pages if p[0] == 200)[2])
        url = srv.url.replace("http", "ws", 1) + f"api/kernels/{kid}/channels"
        with connect(url, open_timeout=30, max_size=None) as ws:
            ws.send(json.dumps(kernel_message("kernel_info_request", {})))
            while json.loads(ws.recv(timeout=30))["msg_type"] != "kernel_info_reply":
                pass
            eventually(lambda: srv.request(f"api/kernels/{kid}").status == 404, 40, "the idle seat was kept")
        assert "its page brought no widget up within 10 s" in srv.log_text()
        eventually(lambda: srv.health()["student_kernels"]["running"] == 0, 40, "seats were not freed")
        assert get_from(srv, "127.0.0.1", srv.join_url)[0] == 200


@pytest.mark.slow
def test_a_reload_gets_its_seat_back_in_a_full_class_and_nobody_else_does(tmp_path, dashboards):
    with running_server(tmp_path, pool_size=0, dashboards=dashboards, max_students=2, connect_timeout=60) as srv:
        seat_name = f"ss-student-seat-{srv.class_id}"
        ada, bob = load_page(srv, srv.join_url), load_page(srv, srv.join_url)
        assert (ada[0], bob[0]) == (200, 200)
        seat = ada[2][seat_name]
        assert "HttpOnly" in seat and "SameSite=Strict" in seat and "Path=/voila/render/student.ipynb" in seat
        assert "expires" not in seat.lower()  # a session cookie: the place lasts as long as the page
        old_kernel = kernel_id(ada[1])
        # The class is full: a newcomer is refused, with or without a made-up seat.
        assert load_page(srv, srv.join_url)[0] == 503
        assert load_page(srv, srv.join_url, {seat_name: "A" * 32})[0] == 503
        # Ada reloads: her browser presents the seat; she gets a new kernel, the old one is shut down at once.
        status, body, cookies = load_page(srv, srv.join_url, {seat_name: cookie_value(seat)})
        assert status == 200
        assert kernel_id(body) not in (None, old_kernel, kernel_id(bob[1]))
        assert cookie_value(cookies[seat_name]) != cookie_value(seat)  # a new seat for the next reload
        assert srv.request(f"api/kernels/{old_kernel}").status == 404
        assert srv.health()["student_kernels"] == {"running": 2, "max": 2}
        assert "its page was reloaded" in srv.log_text()
        # The spent seat (a copied cookie) and a stranger still get nothing: the class stays at two.
        assert load_page(srv, srv.join_url, {seat_name: cookie_value(seat)})[0] == 503
        assert load_page(srv, srv.join_url)[0] == 503
        # The new seat works again, as many reloads as the student makes.
        again = load_page(srv, srv.join_url, {seat_name: cookie_value(cookies[seat_name])})
        assert again[0] == 200 and srv.health()["student_kernels"]["running"] == 2
