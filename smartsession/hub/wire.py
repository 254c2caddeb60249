"""Websocket connections for the hub: tornado answers the HTTP upgrade, then frames flow on asyncio directly.

Tornado's own websocket handler reads each frame through several awaited stream reads and re-registers the
socket with the event loop after every message: at a thousand students that was over half of the hub's CPU.
Here, once the handshake is answered, the socket moves to a plain asyncio transport and websockets' sans-I/O
``Protocol`` parses frames straight from the socket's read callback: one call per arrival, no task or future.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import socket

from tornado import iostream, web
from websockets.frames import Opcode
from websockets.protocol import OPEN, Protocol, Side

from smartsession.seams.http import unsent_bytes

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
log = logging.getLogger("smartsession.hub")

# Tasks the loop only holds weakly: kept here until they finish, so none is collected mid-flight.
_tasks: set[asyncio.Future] = set()


def keep(future: asyncio.Future) -> asyncio.Future:
    """Hold a reference to ``future`` (an ``ensure_future`` result) until it is done."""
    _tasks.add(future)
    future.add_done_callback(_tasks.discard)
    return future


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


# Every connection reads into this one buffer: frames are parsed (and copied out) before the next read, and the
# loop runs one callback at a time. asyncio's default read allocates 256 KiB per recv (an mmap, zeroed pages,
# then a shrink) for messages of a few hundred bytes: a fifth of the hub's CPU at a thousand students.
_READ_BUFFER = memoryview(bytearray(65536))


def text_frame(text: str) -> bytes:
    """A server's unfragmented text frame: a 2-10 byte header, then the payload, unmasked (RFC 6455, 5.2).

    The hub writes thousands a second; websockets' general serializer (masks, extensions, checks) cost more
    than the write itself. Only data frames take this path; control frames go through the protocol.
    """
    return _data_frame(0x81, text.encode())


def binary_frame(data: bytes) -> bytes:
    """The same for binary data (serve's face pipe relays a page's batches to its kernel as they came)."""
    return _data_frame(0x82, data)


def _data_frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def _retrieve(future: asyncio.Future) -> None:
    # A write still pending when its client vanishes fails; that is expected, not worth a log entry.
    if not future.cancelled():
        future.exception()


class WebSocket(asyncio.BufferedProtocol):
    """One accepted websocket. Subclasses override ``on_open``, ``on_message``, ``on_pong`` and ``on_close``.

    ``send(text)``, ``ping()`` and ``close(code, reason)`` never raise: on a connection that is closing or
    gone they do nothing, so callers fanning out to many clients need no error handling per client.
    ``on_close`` runs exactly once, when the connection is gone, however it ended.

    ``write_limit``: bytes written but not yet taken by the peer above which ``on_backlog`` runs (once): a
    client that stops reading must not make the server hold an ever-growing backlog for it.
    """

    close_timeout = 5.0  # seconds the peer has to answer our close frame before the socket is dropped
    write_limit = 0  # 0: no limit
    send_buffer = 0  # the kernel's send buffer for this socket (SO_SNDBUF); 0: the system's, autotuned to MBs

    def __init__(self, max_size: int = 65536) -> None:
        self.ws = Protocol(Side.SERVER, max_size=max_size)
        self.transport: asyncio.BaseTransport | None = None
        self._fragments: list[bytes] = []
        self._opcode = Opcode.TEXT
        self._ended = False
        self._abort_timer: asyncio.TimerHandle | None = None

    # --- hooks ---

    def on_open(self) -> None:
        """The handshake is done and frames may flow."""

    def on_message(self, message: str | bytes) -> None:
        """A whole message: ``str`` for text frames, ``bytes`` for binary ones."""

    def on_pong(self, data: bytes) -> None:
        """The answer to a ``ping()``."""

    def on_close(self) -> None:
        """The connection is gone."""

    def on_backlog(self, pending: int) -> None:
        """More than ``write_limit`` bytes are waiting for the peer to read them."""
        self.close(1008, "not reading what the server sends")

    # --- sending ---

    @property
    def open(self) -> bool:
        return self.ws.state is OPEN and not self._ended

    def send(self, text: str) -> None:
        self._write(text_frame(text))

    def send_binary(self, data: bytes) -> None:
        self._write(binary_frame(data))

    def _write(self, frame: bytes) -> None:
        if self.open and not self.transport.is_closing():
            transport = self.transport
            transport.write(frame)
            if self.write_limit:
                pending = transport.get_write_buffer_size()
                if pending > self.write_limit:
                    self.on_backlog(pending)

    def ping(self, data: bytes = b"") -> None:
        if self.open:
            self.ws.send_ping(data)
            self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the socket is dropped if the peer does not answer in time."""
        if not self.open:
            return
        self.ws.send_close(code, reason.encode()[:123].decode(errors="ignore"))
        self._flush()
        self._abort_later()

    def _abort_later(self) -> None:
        """Drop the socket after ``close_timeout`` unless the closing handshake ends first (timer set once)."""
        if self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(self.close_timeout, self._abort)

    def _abort(self) -> None:
        if not self._ended and self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        for data in self.ws.data_to_send():
            if self.transport is None or self.transport.is_closing():
                return
            if data:
                self.transport.write(data)
            else:  # the protocol's end-of-stream signal: a server closes the TCP connection itself
                self.transport.close()

    # --- asyncio.BufferedProtocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.on_open()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        try:
            self._receive(data)
        except Exception:  # a bug must cost this connection, with a close frame, never the loop's callback
            log.exception("websocket error: closing the connection")
            if self.open:
                self.close(1011, "server error: reconnect")
            else:
                self._abort()

    def _receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        events = self.ws.events_received()
        self._flush()  # pongs and the answer to a close go out before any message is handled
        for frame in events:
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                self._data_frame(frame)
            elif opcode is Opcode.PONG:
                self.on_pong(frame.data)
        if self.ws.close_expected():
            self._abort_later()

    def _data_frame(self, frame) -> None:
        if frame.opcode is not Opcode.CONT:
            self._opcode = frame.opcode  # a fragmented message's type comes with its first fragment
        if not frame.fin:
            self._fragments.append(frame.data)
            return
        data = frame.data
        if self._fragments:
            data, self._fragments = b"".join([*self._fragments, data]), []
        if not self.open:
            return  # we are closing: messages that were already on the way are not handled
        if self._opcode is Opcode.BINARY:
            self.on_message(bytes(data))
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self.close(1007, "text frame is not valid UTF-8")
            return
        self.on_message(text)

    def eof_received(self) -> bool:
        self.ws.receive_eof()
        self._flush()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ended:
            return
        self._ended = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        self.on_close()


class StreamTransport:
    """The part of asyncio's transport that ``WebSocket`` uses, over a tornado IOStream.

    For TLS connections: the encrypted socket stays with tornado, which reads whatever has arrived in one
    partial read per wake-up and hands it to the websocket.
    """

    def __init__(self, stream: iostream.IOStream) -> None:
        self.stream = stream
        self._last_write: asyncio.Future | None = None

    def write(self, data: bytes) -> None:
        if not self.stream.closed():
            self._last_write = self.stream.write(data)
            self._last_write.add_done_callback(_retrieve)

    def is_closing(self) -> bool:
        return self.stream.closed()

    def get_write_buffer_size(self) -> int:
        return unsent_bytes(self.stream)

    def close(self) -> None:
        """Close once what was written has gone out (a close frame, say)."""
        pending = self._last_write
        if pending is None or pending.done():
            self.stream.close()
        else:
            pending.add_done_callback(lambda _: self.stream.close())

    def abort(self) -> None:
        self.stream.close()

    async def pump(self, ws: WebSocket) -> None:
        try:
            ws.connection_made(self)
            while True:
                ws.data_received(await self.stream.read_bytes(65536, partial=True))
        except iostream.StreamClosedError:
            pass
        except Exception:  # never leave the stream open with nobody reading it
            log.exception("error on a TLS websocket: dropping it")
        finally:
            self.stream.close()
            ws.connection_lost(None)


class WebSocketRoute(web.RequestHandler):
    """A tornado route that accepts websocket upgrades and gives each connection to ``connection(*path_args)``.

    The handshake answers as tornado's own websocket handler does (400, 403 for a foreign Origin, 426 for
    another protocol version); no extensions or subprotocols are negotiated.
    """

    def connection(self, *path_args: str) -> WebSocket:
        raise NotImplementedError

    def check_origin(self, origin: str) -> bool:
        return True

    def check_xsrf_cookie(self) -> None:
        pass  # a websocket handshake is a GET; the Origin check above is what guards it

    def refuse(self, status: int, text: str, **headers: str) -> None:
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        self.finish(text)

    async def get(self, *path_args: str) -> None:
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return self.refuse(400, 'Can "Upgrade" only to "WebSocket".')
        if "upgrade" not in {part.strip().lower() for part in headers.get("Connection", "").split(",")}:
            return self.refuse(400, '"Connection" must be "Upgrade".')
        if headers.get("Sec-WebSocket-Version") != "13":
            return self.refuse(426, "websocket version 13 only", **{"Sec-WebSocket-Version": "13"})
        key = headers.get("Sec-WebSocket-Key", "")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError(key)
        except (ValueError, binascii.Error):
            return self.refuse(400, "missing or malformed Sec-WebSocket-Key")
        origin = headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            return self.refuse(403, "Cross origin websockets not allowed")
        ws = self.connection(*path_args)
        if ws is None:
            return  # connection() answered the request itself (a refusal)
        stream = self.detach()
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_value(key)}\r\n\r\n"
        ).encode()
        try:
            await stream.write(response)
        except iostream.StreamClosedError:
            ws.connection_lost(None)
            return
        if ws.send_buffer:
            # Without it Linux lets a reader that never reads tie up megabytes of kernel memory before the
            # first byte waits in ours (where write_limit applies).
            try:
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ws.send_buffer)
            except OSError:
                pass
        if isinstance(stream, iostream.SSLIOStream):
            # Small frames each way: Nagle would hold one back for the peer's delayed ack (up to 40 ms). Tornado
            # only turns it off around its own responses; asyncio's transports (below) do it themselves.
            stream.set_nodelay(True)
            transport = StreamTransport(stream)
            keep(asyncio.ensure_future(transport.pump(ws)))
            return
        # A plain socket moves to asyncio: a duplicate of the descriptor goes to the loop's own transport and
        # tornado closes its copy. Nothing can be buffered in the stream: a client sends no frame before our 101.
        sock = stream.socket.dup()
        stream.close()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: ws, sock)
        except OSError:
            sock.close()
            ws.connection_lost(None)
