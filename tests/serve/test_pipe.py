"""Serve's face pipe (``serve/pipe.py``): real websockets on 127.0.0.1 through the hub's HTTP server, a kernel's end
and a page's, speaking the protocol by hand so every refusal is seen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets

import pytest
import websockets
from tornado import web
from tornado.netutil import bind_sockets

from smartsession.facepipe import KERNEL_ROUTE, PAGE_ROUTE, CloseCode
from smartsession.hub.config import HubConfig
from smartsession.hub.core import Hub
from smartsession.hub.httpserver import hub_http_server
from smartsession.serve import pipe
from smartsession.serve.pipe import Pipes, pipe_handlers
from smartsession.vision import packed

SECRET = "s" * 43


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


@contextlib.asynccontextmanager
async def running_pipes(tmp_path):
    hub = Hub(HubConfig(data_dir=str(tmp_path)))
    await hub.start()
    pipes = Pipes(SECRET)
    server = hub_http_server(web.Application(pipe_handlers(hub, pipes)), hub.config, hub.connections, None,
                             hub.quiet, xheaders=False)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    try:
        yield pipes, f"ws://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        server.stop()
        await hub.stop()
        await server.close_all_connections()


async def kernel_end(url: str, token: str, secret: str = SECRET):
    ws = await websockets.connect(f"{url}/{KERNEL_ROUTE}", open_timeout=30)
    await ws.send(json.dumps({"type": "hello", "token": token, "secret": secret}))
    return ws


async def page_end(url: str, token: str):
    ws = await websockets.connect(f"{url}/{PAGE_ROUTE}", open_timeout=30, max_size=2**20)
    await ws.send(json.dumps({"type": "hello", "token": token}))
    return ws


async def welcomed(ws) -> None:
    assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {"type": "welcome"}


async def closed_with(ws) -> tuple[int, str]:
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    return ws.close_code, ws.close_reason


async def paired(url: str):
    """A kernel's end and its page's, both welcomed: (token, kernel, page)."""
    token = secrets.token_urlsafe(32)
    kernel = await kernel_end(url, token)
    await welcomed(kernel)
    page = await page_end(url, token)
    await welcomed(page)
    return token, kernel, page


def batch(seq: int, faces: int = 2) -> bytes:
    face = packed.encode(1.0, 640, 480, 0)
    head = json.dumps({"t": 1.0, "sizes": [len(face)] * faces}).encode()
    return packed.BATCH_PREFIX.pack(seq, len(head)) + head + face * faces


def test_a_pages_batches_reach_its_kernel_byte_for_byte_and_the_acks_come_back(tmp_path):
    async def go():
        async with running_pipes(tmp_path) as (pipes, url):
            token, kernel, page = await paired(url)
            sent = batch(7)
            await page.send(sent)
            assert await asyncio.wait_for(kernel.recv(), 30) == sent
            assert packed.split_batch(sent)[0] == 7
            await kernel.send(json.dumps({"type": "ack", "seq": 7, "processed": True}))
            assert json.loads(await asyncio.wait_for(page.recv(), 30))["seq"] == 7
            # The kernel going closes its page's pipe with a reason: the page sends over the comm then.
            await kernel.close()
            assert (await closed_with(page))[0] == CloseCode.GONE
            assert pipes.kernels == {}

    run(go())


def test_only_the_servers_kernels_open_a_pipe_and_a_page_needs_a_live_token(tmp_path):
    async def go():
        async with running_pipes(tmp_path) as (_pipes, url):
            token = secrets.token_urlsafe(32)
            impostor = await kernel_end(url, token, secret="x" * 43)
            assert (await closed_with(impostor))[0] == CloseCode.FORBIDDEN
            page = await page_end(url, token)
            assert (await closed_with(page))[0] == CloseCode.UNKNOWN
            short = await kernel_end(url, "short")
            assert (await closed_with(short))[0] == CloseCode.BAD_HELLO
            not_hello = await websockets.connect(f"{url}/{PAGE_ROUTE}", open_timeout=30)
            await not_hello.send(b"\x00" * 16)
            assert (await closed_with(not_hello))[0] == CloseCode.BAD_HELLO

    run(go())


def test_a_connection_that_never_says_hello_is_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(pipe, "HELLO_TIMEOUT", 0.3)

    async def go():
        async with running_pipes(tmp_path) as (_pipes, url):
            silent = await websockets.connect(f"{url}/{PAGE_ROUTE}", open_timeout=30)
            assert (await closed_with(silent))[0] == CloseCode.BAD_HELLO

    run(go())


def test_hostile_pages_are_refused_by_name_and_the_limits_hold_across_reconnects(tmp_path):
    async def go():
        async with running_pipes(tmp_path) as (pipes, url):
            token, kernel, page = await paired(url)
            # A flood without waiting for acks: the first go to the kernel (burst, then batches awaiting their
            # ack), every other one is refused by its number and never reaches the kernel.
            for seq in range(1, 21):
                await page.send(batch(seq))
            forwarded = [packed.batch_number(await asyncio.wait_for(kernel.recv(), 30))
                         for _ in range(pipe.MAX_AWAITING)]
            assert forwarded == list(range(1, pipe.MAX_AWAITING + 1))
            refused = [json.loads(await asyncio.wait_for(page.recv(), 30)) for _ in range(20 - pipe.MAX_AWAITING)]
            assert [r["seq"] for r in refused] == list(range(pipe.MAX_AWAITING + 1, 21))
            assert all(r["processed"] is False and r["error"].startswith("refused") for r in refused)
            # A reconnect (the newest connection takes the pipe) starts with the same limits, not fresh ones.
            again = await page_end(url, token)
            await welcomed(again)
            assert (await closed_with(page))[0] == CloseCode.REPLACED
            await again.send(batch(99))
            assert json.loads(await asyncio.wait_for(again.recv(), 30))["processed"] is False
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(kernel.recv(), 0.5)
            # Text after the hello, and a message larger than any batch, close the page's connection.
            await again.send("{}")
            assert (await closed_with(again))[0] == CloseCode.BINARY_ONLY
            big = await page_end(url, token)
            await welcomed(big)
            await big.send(b"\x00" * (packed.MAX_BATCH_MESSAGE + 1))
            assert (await closed_with(big))[0] == 1009
            # The kernel acks what it was sent; then batches flow again.
            for seq in forwarded:
                await kernel.send(json.dumps({"type": "ack", "seq": seq, "processed": True}))
            page = await page_end(url, token)
            await welcomed(page)
            await asyncio.sleep(1.0)  # the rate's bucket refills
            await page.send(batch(100))
            assert packed.batch_number(await asyncio.wait_for(kernel.recv(), 30)) == 100
            assert len(pipes.kernels) == 1

    run(go())


def test_batch_messages_are_split_only_when_every_part_is_in_bounds():
    whole = batch(3, faces=3)
    seq, header, faces = packed.split_batch(whole)
    assert seq == 3 and header["t"] == 1.0 and len(faces) == 3 and all(packed.decode(f).face.faces == 0 for f in faces)
    head = json.dumps({"t": 1, "sizes": [24]}).encode()
    cases = {
        "short": b"\x01\x00",
        "header past the end": packed.BATCH_PREFIX.pack(1, 999) + head,
        "header not JSON": packed.BATCH_PREFIX.pack(1, 3) + b"{x}" + b"\x00" * 24,
        "no sizes": packed.BATCH_PREFIX.pack(1, 2) + b"{}",
        "sizes disagree": packed.BATCH_PREFIX.pack(1, len(head)) + head + b"\x00" * 30,
    }
    too_many = json.dumps({"t": 1, "sizes": [24] * (packed.MAX_BATCH + 1)}).encode()
    cases["too many faces"] = packed.BATCH_PREFIX.pack(1, len(too_many)) + too_many + b"\x00" * 24 * (packed.MAX_BATCH + 1)
    for name, data in cases.items():
        with pytest.raises(packed.PackedFaceError):
            packed.split_batch(data)
        assert packed.batch_number(data) == (None if name == "short" else 1), name


# --- end to end: the real student page under a real serve, its kernel's end and a page client's ---


def test_a_student_kernel_offers_its_pipe_and_analyses_batches_through_it_or_over_the_comm(tmp_path):
    """The student page's kernel opens its pipe at consent and offers it through the camera; batches sent there
    are analysed and acked there, without a Jupyter message; a page whose pipe is refused (a stale token) sends
    over the comm, and its batches are analysed all the same."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "benchmarks"))
    from capacity import face_frames, landmarked, recorded_frames

    from testkit.pageclient import PageClient
    from testkit.serving import kernel_id, running_server

    faces = face_frames(landmarked(recorded_frames(20), fps=5))

    async def stream(page, seconds: float):
        stop = asyncio.Event()
        task = asyncio.create_task(page.stream(faces, 5, stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    async def student(server, kid):
        async with PageClient.for_kernel(server.url, kid) as page:
            await page.consent("Piped student", analysis="browser")
            for _ in range(300):  # the kernel offers its pipe when the student agrees; the page then connects
                if page.piped:
                    break
                await asyncio.sleep(0.1)
            offer = dict(page.pipe_offer)
            assert offer["path"] == f"/{PAGE_ROUTE}" and len(offer["token"]) >= 32
            page.frames.reset()  # what the page's loading and consent cost is not the stream's
            await stream(page, 4)
            piped = dict(page.frames.kinds)
            processed = page.frames.processed
            # A pipe that refuses the page: batches go over the comm, and are analysed as well.
            page.follow_pipe({"path": offer["path"], "token": secrets.token_urlsafe(32)})
            await asyncio.sleep(1)
            assert not page.piped
            page.frames.reset()
            await stream(page, 4)
            return piped, processed, dict(page.frames.kinds), page.frames.processed

    with running_server(tmp_path, pool_size=1, timeout=300, analysis="browser", refill_quiet=3600) as server:
        server.wait_warm(600)
        kid = kernel_id(server.request(server.join_url, timeout=120).text)
        piped, piped_processed, comm, comm_processed = asyncio.run(asyncio.wait_for(student(server, kid), 240))
    assert piped_processed >= 10 and piped.get("up pipe faces", 0) >= 4 and piped.get("down pipe ack", 0) >= 4
    assert "up custom faces" not in piped and "down status idle" not in piped, piped  # no Jupyter message a batch
    assert comm_processed >= 10 and comm.get("up custom faces", 0) >= 4 and "up pipe faces" not in comm, comm
