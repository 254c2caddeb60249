"""The hub's websocket layer (``smartsession.hub.wire``): the handshake, framing and closing, against a real hub
on 127.0.0.1, with the websockets client and with raw sockets where a well-behaved client cannot go."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl

import pytest
from websockets.frames import Frame, Opcode

from smartsession.hub.core import AckPacer
from smartsession.hub.standalone import running_hub
from smartsession.hub import wire
from smartsession.hub.wire import StreamTransport, accept_value, text_frame
from smartsession.serve.tls import self_signed_certificate


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_text_frames_are_the_bytes_websockets_itself_would_write(size):
    text = "é" * (size // 2) + "a" * (size % 2)
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_accept_value_is_rfc_6455s_example():
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def nagle_off(connection) -> bool:
    """TCP_NODELAY on the hub's side of a connection (asyncio's socket, or tornado's for TLS)."""
    transport = connection.transport
    sock = transport.stream.socket if isinstance(transport, StreamTransport) else transport.get_extra_info("socket")
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def raw_request(host: str, port: int, path: str, **headers: str) -> tuple[socket.socket, bytes]:
    """Send a websocket upgrade by hand; return the socket and the response head."""
    fields = {"Host": f"{host}:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13",
              **{k.replace("_", "-"): v for k, v in headers.items()}}
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall((f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
                  + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + body


def read_close(sock: socket.socket) -> tuple[int, str]:
    """Read frames until the server's close frame; return its code and reason."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, f"connection ended without a close frame: {data!r}"
        data += chunk
        while len(data) >= 2:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            if len(data) < 2 + n:
                break
            payload, data = data[2:2 + n], data[2 + n:]
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def test_handshake_refusals_answer_like_tornado(tmp_path):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Wire")
            host, port = url.split("//")[1].split(":")
            path = f"/smartsession/ws/teacher/{info['class_id']}"

            def head(**headers):
                sock, response = raw_request(host, int(port), path, **headers)
                sock.close()
                return response.decode(errors="replace")

            loop = asyncio.get_running_loop()
            cases = {
                "426": {"Sec_WebSocket_Version": "8"},
                "400 missing": {"Sec_WebSocket_Key": "not base64!"},
                "400 upgrade": {"Upgrade": "h2c"},
                "400 connection": {"Connection": "keep-alive"},
                "403": {"Origin": "http://evil.example"},
            }
            for expected, headers in cases.items():
                response = await loop.run_in_executor(None, lambda: head(**headers))
                assert response.startswith("HTTP/1.1 " + expected.split()[0]), (expected, response)
            assert "sec-websocket-version: 13" in (await loop.run_in_executor(
                None, lambda: head(Sec_WebSocket_Version="8"))).lower()
            ok = await loop.run_in_executor(None, lambda: head(Origin=f"http://{host}:{port}"))
            assert ok.startswith("HTTP/1.1 101") and "Sec-WebSocket-Accept: " in ok

    run(main())


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_fragments_pings_and_a_clean_close(tmp_path, kit, monkeypatch, tls):
    # Plain sockets move to asyncio; TLS ones stay on tornado's SSLIOStream: both paths, same behaviour.
    certs = {}
    if tls:
        certfile, keyfile = self_signed_certificate(tmp_path / "tls", [])
        certs = {"certfile": str(certfile), "keyfile": str(keyfile)}
        monkeypatch.setenv("SMARTSESSION_HUB_CAFILE", str(certfile))  # for the join over https
        trust = {"ssl": ssl.create_default_context(cafile=str(certfile))}

    async def main():
        async with running_hub(data_dir=tmp_path / "data", **certs) as (hub, url):
            info = hub.create_class("Wire")
            connect = (lambda path: kit.connect(url, path, **trust)) if tls else (lambda path: kit.connect(url, path))
            tws = await connect(f"/smartsession/ws/teacher/{info['class_id']}")
            assert (await kit.hello(tws, info["teacher_token"]))["type"] == "snapshot"
            joined = await kit.join(url, info, "Frag")
            ws = await connect(f"/smartsession/ws/student/{info['class_id']}/{joined['student_id']}")
            hello = json.dumps({"type": "hello", "v": 1, "token": joined["token"]})
            await ws.send([hello[:10], hello[10:30], hello[30:]])  # one message in three frames
            assert json.loads(await ws.recv())["type"] == "welcome"
            text = kit.state(joined, 1)
            await ws.send([text[:50], text[50:]])
            got = await kit.until(tws, lambda m: m["type"] == "state")
            assert got["seq"] == 1 and got["student_id"] == joined["student_id"]
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)
            assert hub.health()["students"] == 1
            # Small frames must not wait for the peer's delayed ack (Nagle), whichever transport carries them.
            assert all(nagle_off(c) for c in [*hub.students.values(), *hub.teachers[info["class_id"]]])
            if tls:
                # The loop holds tasks weakly: each TLS connection's reading task is kept until it ends.
                pumps = [t for t in wire._tasks if t.get_coro().__qualname__ == "StreamTransport.pump"]
                assert len(pumps) == 2
            await ws.close()
            assert ws.close_code == 1000
            left = await kit.until(tws, lambda m: m["type"] == "presence")
            assert left["presence"] == "disconnected"
            assert hub.health()["students"] == 0

    run(main())


def test_bad_frames_close_that_connection_only(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Wire")
            tws, _ = await kit.teacher(url, info)
            host, port = url.split("//")[1].split(":")
            loop = asyncio.get_running_loop()

            def send_raw(frames: bytes) -> tuple[int, str]:
                joined_path = f"/smartsession/ws/teacher/{info['class_id']}"
                sock, head = raw_request(host, int(port), joined_path)
                assert head.startswith(b"HTTP/1.1 101"), head
                sock.sendall(frames)
                try:
                    return read_close(sock)
                finally:
                    sock.close()

            assert await loop.run_in_executor(None, send_raw, masked(0x1, b"\xff\xfe bad utf-8")) == (
                1007, "text frame is not valid UTF-8")
            code, reason = await loop.run_in_executor(None, send_raw, masked(0x2, b"\x00\x01"))
            assert code == 4000 and "binary" in reason
            code, _ = await loop.run_in_executor(None, send_raw, masked(0x0, b"orphan continuation"))
            assert code == 1002
            code, _ = await loop.run_in_executor(
                None, send_raw, bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + os.urandom(4))
            assert code == 1009
            # The teacher connected before all this is still served.
            await tws.send(json.dumps({"type": "command", "v": 1, "id": 1, "command": "start_segment",
                                       "title": "After the noise"}))
            result = await kit.until(tws, lambda m: m["type"] == "result")
            assert result["ok"] is True

    run(main())


def test_messages_sent_before_the_welcome_wait_for_the_class_to_load(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Wire")
            joined = await kit.join(url, info, "Eager")
            ws = await kit.connect(url, f"/smartsession/ws/student/{info['class_id']}/{joined['student_id']}")
            # No connection has loaded this class yet: the states come right behind the hello, before it loads.
            await ws.send(json.dumps({"type": "hello", "v": 1, "token": joined["token"]}))
            await ws.send(kit.state(joined, 1))
            await ws.send(kit.state(joined, 2))
            assert json.loads(await ws.recv())["type"] == "welcome"
            ack = await kit.until(ws, lambda m: m["type"] == "ack" and m["seq"] == 2, timeout=10)
            assert ack["seq"] == 2
            assert hub.rooms[info["class_id"]].student(joined["student_id"]).state["seq"] == 2

    run(main())


def test_acks_go_out_a_few_dozen_per_loop_turn_highest_seq_per_student():
    class Recorder:
        def __init__(self):
            self.sent = []

        def send(self, text):
            self.sent.append((turns[0], json.loads(text)))

    turns = [0]

    async def main():
        async def count_turns():
            while True:
                turns[0] += 1
                await asyncio.sleep(0)

        counter = asyncio.ensure_future(count_turns())
        students = [Recorder() for _ in range(200)]
        pacer = AckPacer()
        pacer.add([(s, seq) for seq in (1, 2, 3) for s in students])  # three states each in one commit
        while pacer.running:
            await asyncio.sleep(0.001)
        counter.cancel()
        return students

    students = run(main())
    assert all(s.sent and [m for _, m in s.sent] == [{"type": "ack", "seq": 3}] for s in students)
    per_turn: dict[int, int] = {}
    for s in students:
        per_turn[s.sent[0][0]] = per_turn.get(s.sent[0][0], 0) + 1
    assert max(per_turn.values()) <= AckPacer.per_turn
    assert len(per_turn) >= 200 // AckPacer.per_turn
