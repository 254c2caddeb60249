"""Issue 10 (#6, #7) inside ``smartsession serve``: the hub's HTTP server settings hold for the whole server."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

from testkit.processes import closed_by_peer


def test_slow_headers_and_announced_huge_bodies_are_cut_off(server):
    url = urlparse(server.url)
    address = (url.hostname, url.port)
    slow = socket.create_connection(address)
    slow.sendall(b"GET /voila/render/student.ipynb HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
    idle = socket.create_connection(address)  # says nothing at all
    huge = socket.create_connection(address, timeout=10)
    huge.sendall(b"POST /smartsession/api/join HTTP/1.1\r\nHost: x\r\nContent-Length: 90000000\r\n\r\n")
    assert huge.recv(4096).startswith(b"HTTP/1.1 413")  # answered from the header, the body never read
    huge.close()
    started = time.monotonic()
    assert closed_by_peer(slow, 20) and closed_by_peer(idle, 5)  # header_timeout: 10 s by default
    assert time.monotonic() - started < 20
    slow.close()
    idle.close()
    assert server.health()["ok"]
