"""tornado's HTTP server with the hub's limits, for ``smartsession hub`` and ``smartsession serve`` alike.

* a request's header must arrive within ``header_timeout`` of the connection opening or of the previous
  response (so idle keep-alive connections close then too), its body within ``body_timeout``;
* bodies above ``max_body_bytes`` and headers above ``max_header_bytes`` are refused (the hub's own API
  refuses far smaller bodies by their declared length, before reading them);
* open connections are counted per address and in all (``ConnectionLimiter``); past the total, the
  connection that has waited longest for its request header is closed to make room (a slow-header
  client cannot hold the server), past an address's cap the newcomer is answered 503;
* when the process runs out of file descriptors, accepting pauses briefly instead of spinning on the
  error (which once logged 78 MB in 15 s).
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import socket
import ssl
from collections import OrderedDict
from typing import Any

from tornado import httputil, iostream
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from smartsession.hub.protocol import ConnectionLimiter, QuietLog
from smartsession.seams import http

log = logging.getLogger("smartsession.hub")

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_PAUSE = 0.5  # seconds accepting pauses when no file descriptor is left


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process' open-file soft limit towards its hard limit (capped at ``wanted``); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else wanted


def connection_cap(configured: int) -> int:
    """``configured``, but below the file-descriptor limit with room for the store, logs and kernels."""
    soft = raise_fd_limit()
    return max(16, min(configured, soft - max(64, soft // 8)))


def _refusal(reason: str) -> bytes:
    body = json.dumps({"error": reason, "status": 503}).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Retry-After: 10\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _close_after(stream: iostream.IOStream, written) -> None:
    if not written.cancelled():
        written.exception()  # a peer already gone: nothing to report
    stream.close()


class _HeaderSeen(httputil.HTTPMessageDelegate):
    """Passes everything to the application's delegate; tells the server when the request header is in."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate, seen) -> None:
        self.delegate, self.seen = delegate, seen

    def headers_received(self, start_line, headers):
        self.seen()
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class HubHTTPServer(HTTPServer):
    """``HubHTTPServer(app, limiter=..., header_timeout=..., ...)``; see the module docstring."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        limiter: ConnectionLimiter,
        header_timeout: float = 10.0,
        body_timeout: float = 10.0,
        max_body_bytes: int = 1 << 20,
        max_header_bytes: int = 65536,
        quiet: QuietLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().initialize(
            request_callback,
            idle_connection_timeout=header_timeout,  # tornado's header timeout: from waiting to a full header
            body_timeout=body_timeout,
            max_body_size=max_body_bytes,
            max_header_size=max_header_bytes,
            **kwargs,
        )
        self.limiter = limiter
        self.quiet = quiet or QuietLog(log.info)
        self._waiting: OrderedDict[iostream.IOStream, None] = OrderedDict()  # waiting for a request header

    # --- accepting ---

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            http.listen_with(self, sock, self._accept_on(sock))

    def _accept_on(self, sock: socket.socket):
        loop = IOLoop.current()
        state = {"removed": False, "paused": False}

        def accept(fd, events) -> None:
            for _ in range(128):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_RESOURCES:
                        raise
                    # The pending connection stays queued; the listening socket stays readable, and
                    # retrying at once would spin (and log) as fast as the loop can go.
                    self.quiet("cannot accept connections (%s): pausing %.1f s", exc.strerror, ACCEPT_PAUSE)
                    loop.remove_handler(sock)
                    state["paused"] = True
                    loop.call_later(ACCEPT_PAUSE, resume)
                    return
                http.handle_accepted(self, connection, address)

        def resume() -> None:
            if not state["removed"] and state["paused"]:
                state["paused"] = False
                loop.add_handler(sock, accept, IOLoop.READ)

        def remove() -> None:
            state["removed"] = True
            if not state["paused"]:
                loop.remove_handler(sock)

        loop.add_handler(sock, accept, IOLoop.READ)
        return remove

    def handle_stream(self, stream: iostream.IOStream, address: Any) -> None:
        ip = address[0] if isinstance(address, tuple) else "local"
        if self.limiter.full() and self._waiting and not self.limiter.address_full(ip):
            # Make room: the connection that has waited longest for its request header goes (slow headers
            # or an idle keep-alive; browsers simply open a new one).
            oldest, _ = self._waiting.popitem(last=False)
            self.limiter.release(oldest)
            oldest.close()
        why = self.limiter.acquire(stream, ip)
        if why is not None:
            self.quiet("refused a connection from %s: %s", ip, why)
            if isinstance(stream, iostream.SSLIOStream):
                stream.close()  # no TLS handshake for a connection we will not serve
            else:
                stream.write(_refusal(why)).add_done_callback(lambda f: _close_after(stream, f))
            return
        super().handle_stream(stream, address)

    def start_request(self, server_conn: Any, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        stream = server_conn.stream
        self._waiting[stream] = None
        self._waiting.move_to_end(stream)
        return _HeaderSeen(super().start_request(server_conn, request_conn),
                           lambda: self._waiting.pop(stream, None))

    def on_close(self, server_conn: Any) -> None:
        self._waiting.pop(server_conn.stream, None)
        self.limiter.release(server_conn.stream)  # nothing when a websocket took the slot over
        super().on_close(server_conn)


def hub_http_server(app: Any, config: Any, limiter: ConnectionLimiter, ssl_options: ssl.SSLContext | None = None,
                    quiet: QuietLog | None = None, **kwargs: Any) -> HubHTTPServer:
    """An HTTP server for ``app`` with the timeouts and sizes of ``config`` (a ``HubConfig``)."""
    return HubHTTPServer(
        app,
        limiter=limiter,
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_body_bytes=config.max_body_bytes,
        max_header_bytes=config.max_header_bytes,
        ssl_options=ssl_options,
        quiet=quiet,
        **kwargs,
    )
