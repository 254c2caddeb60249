"""tornado internals behind the hub's HTTP server and websockets, for ``smartsession hub`` and ``serve`` alike.

tornado has no public way to pause accepting on a listening socket, nor to read how much an ``IOStream`` still
holds to send; these functions are the only places that reach inside it.
"""

from __future__ import annotations

import inspect
import socket
from typing import Any, Callable

from tornado import iostream
from tornado.tcpserver import TCPServer

from smartsession.seams import Seam


def listen_with(server: TCPServer, sock: socket.socket, remove: Callable[[], None]) -> None:
    """Register ``sock`` as one of ``server``'s listening sockets whose accepting we drive; ``remove`` stops it."""
    server._sockets[sock.fileno()] = sock
    server._handlers[sock.fileno()] = remove


def handle_accepted(server: TCPServer, connection: socket.socket, address: Any) -> None:
    """Hand an accepted connection to ``server`` as its own accept handler would (TLS wrapping included)."""
    server._handle_connection(connection, address)


def unsent_bytes(stream: iostream.BaseIOStream) -> int:
    """Bytes written to ``stream`` that its socket has not taken yet."""
    return stream._total_write_index - stream._total_write_done_index


def _server_tables(_app) -> str | None:
    server = TCPServer()
    for name in ("_sockets", "_handlers"):
        if not isinstance(getattr(server, name, None), dict):
            return f"TCPServer() has no dict {name}"
    if "_handlers" not in inspect.getsource(TCPServer.stop):
        return "TCPServer.stop() no longer calls the remove functions in _handlers"
    return None


def _handle_connection(_app) -> str | None:
    method = getattr(TCPServer, "_handle_connection", None)
    if method is None:
        return "TCPServer._handle_connection is gone"
    if list(inspect.signature(method).parameters) != ["self", "connection", "address"]:
        return f"TCPServer._handle_connection{inspect.signature(method)} is not (self, connection, address)"
    return None


def _write_indexes(_app) -> str | None:
    source = inspect.getsource(iostream.BaseIOStream.__init__)
    missing = [n for n in ("_total_write_index", "_total_write_done_index") if f"self.{n}" not in source]
    return f"BaseIOStream no longer keeps {', '.join(missing)}" if missing else None


SEAMS = (
    Seam("tornado", "TCPServer._sockets and ._handlers: HubHTTPServer pauses accepting when out of descriptors",
         "5.0", _server_tables),
    Seam("tornado", "TCPServer._handle_connection(connection, address): HubHTTPServer accepts for itself",
         "5.0", _handle_connection),
    Seam("tornado", "IOStream._total_write_index - ._total_write_done_index: a websocket's unsent bytes",
         "5.0", _write_indexes),
)
