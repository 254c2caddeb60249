"""Who the client is behind a proxy: X-Forwarded-For only from the listed proxies, never a guess."""

from __future__ import annotations

import pytest

from smartsession.serve.forwarded import client_address

NGINX = frozenset({"127.0.0.1", "10.0.0.2"})


@pytest.mark.parametrize("peer, header, client", [
    ("127.0.0.1", "192.168.1.23", "192.168.1.23"),  # nginx names the student
    ("192.168.1.50", "10.9.9.9", "192.168.1.50"),  # a student claiming another address, directly
    ("127.0.0.1", "10.9.9.9, 192.168.1.23", "192.168.1.23"),  # a client's own header before nginx's hop
    ("127.0.0.1", "192.168.1.23, 10.0.0.2", "192.168.1.23"),  # two proxies in a row
    ("127.0.0.1", "not-an-address", "127.0.0.1"),  # malformed: the proxy's own address
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", None, "127.0.0.1"),  # a kernel on this machine
    ("127.0.0.1", "10.0.0.2", "10.0.0.2"),  # only proxies: the first of them
    ("127.0.0.1", "fe80::1", "fe80::1"),
])
def test_client_address(peer, header, client):
    assert client_address(peer, header, NGINX) == client
