"""The client's address behind a reverse proxy: ``X-Forwarded-For`` is believed from the listed proxies only.

Per-device limits (student pages per address, joins, connections) need each student's own address; behind nginx
every request comes from nginx. The shipped nginx config replaces the header with the address it saw
(deploy/nginx). A request from any other peer keeps its own address whatever it claims, and a malformed header
from a proxy leaves the proxy's address (a guess would let one client pass for many).
"""

from __future__ import annotations

import tornado.web
from tornado.netutil import is_valid_ip


def client_address(peer: str, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The rightmost address in ``forwarded_for`` that is not a trusted proxy, if ``peer`` is one; else ``peer``."""
    if peer not in trusted or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        if not is_valid_ip(hop):
            return peer
        if hop not in trusted:
            return hop
    return hops[0]


def from_proxies(trusted: frozenset[str]) -> type[tornado.web.OutputTransform]:
    """An output transform that sets each request's ``remote_ip`` (and ``protocol``, from ``X-Forwarded-Proto``)
    before its handler runs: tornado builds an application's transforms for a request ahead of the handler."""

    class ClientAddress(tornado.web.OutputTransform):
        def __init__(self, request):
            super().__init__(request)
            peer = request.remote_ip
            request.remote_ip = client_address(peer, request.headers.get("X-Forwarded-For"), trusted)
            proto = request.headers.get("X-Forwarded-Proto", "")
            if peer in trusted and proto in ("http", "https"):
                request.protocol = proto

    return ClientAddress
