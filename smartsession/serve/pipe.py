"""The face pipe: a browser-analysis page's batches of packed faces to its own kernel, relayed by serve as bytes.

Over Jupyter's kernel websocket every batch costs a signed, JSON-framed message through serve's relay and
ipykernel's shell and IOPub threads, and its "idle" status back: ~3 ms of CPU a round trip, whatever it carries,
where analysing the batch costs ~1 ms (benchmarks/floor.py, benchmarks/student_cost.py). The pipe carries the
same batches, for the same kernel, as plain websocket frames:

- the kernel (``widgets/pipe.py``) connects to ``/smartsession/pipe/kernel`` with serve's pipe secret (which
  serve gives its kernels alone, in their environment) and a token of its own, and tells its page the token
  through the camera widget;
- the page connects to ``/smartsession/pipe/page`` with that token; its binary messages go to the kernel as they
  came, and each text message the kernel sends (a batch's ack) goes back to the page.

Serve reads only a message's size and its first four bytes (the batch's number, to refuse it by name); the kernel
checks the rest exactly as it checks a batch sent over the comm. Nothing is stored, nothing leaves this process
but for the kernel the page already owns, and no image can take this way: the kernel refuses anything but packed
faces. Limits, per kernel and so across the page's reconnects: message size, messages a second, batches awaiting
their ack; a page or kernel that has not said hello in time is closed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from smartsession.facepipe import KERNEL_ROUTE, MAX_KERNEL_TEXT, PAGE_ROUTE, TOKEN, CloseCode
from smartsession.hub.core import Hub
from smartsession.hub.protocol import TokenBucket
from smartsession.hub.server import HubRoute
from smartsession.hub.wire import WebSocket
from smartsession.vision import packed

#: Messages a second a page may send, sustained and at once: the camera sends a batch every 0.25-2 s.
RATE, BURST = 8.0, 8.0
#: Batches forwarded to the kernel and not yet acknowledged (the camera's max_in_flight is at most 8).
MAX_AWAITING = 8
#: Seconds a connection has to say hello.
HELLO_TIMEOUT = 10.0
#: Kernel ends held at once (each is a kernel of this server; the connection cap applies before).
MAX_KERNELS = 4096


class Pipes:
    """The kernel ends by token, and each one's page; one per serve."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.kernels: dict[str, KernelEnd] = {}


class _End(WebSocket):
    role = ""

    def __init__(self, hub: Hub, pipes: Pipes, address: str, max_size: int) -> None:
        super().__init__(max_size=max_size)
        self.hub, self.pipes, self.address = hub, pipes, address
        self.write_limit = hub.config.max_write_buffer
        self.send_buffer = hub.config.socket_send_buffer
        self.token: str | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self.closed = False

    def on_open(self) -> None:
        self._hello_timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._no_hello)

    def _no_hello(self) -> None:
        self.refuse(CloseCode.BAD_HELLO, f"no hello within {HELLO_TIMEOUT:g} s")

    def refuse(self, code: int, reason: str) -> None:
        self.hub.quiet("refused a pipe %s connection from %s: %d %s", self.role, self.address, code, reason)
        self.close(code, reason)

    def hello(self, message: str | bytes) -> dict | None:
        """The hello's fields, or None once the connection is refused."""
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        try:
            msg = json.loads(message) if isinstance(message, str) and len(message) <= 1024 else None
        except ValueError:
            msg = None
        token = msg.get("token") if isinstance(msg, dict) and msg.get("type") == "hello" else None
        if not isinstance(token, str) or not TOKEN.fullmatch(token):
            self.refuse(CloseCode.BAD_HELLO, 'expected {"type": "hello", "token": ...} first')
            return None
        return msg

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self.hub.connections.release(self)
        self.left()

    def left(self) -> None:
        """The connection is gone (after a hello or not)."""


class KernelEnd(_End):
    """A kernel's connection: holds the page, the limits, and forwards the kernel's acks."""

    role = "kernel"

    def __init__(self, hub: Hub, pipes: Pipes, address: str) -> None:
        super().__init__(hub, pipes, address, max_size=MAX_KERNEL_TEXT)
        self.page: PageEnd | None = None
        self.awaiting = 0
        self.rate = TokenBucket(RATE, BURST, time.monotonic())  # the kernel's: a reconnecting page refills nothing

    def on_message(self, message: str | bytes) -> None:
        if self.token is None:
            msg = self.hello(message)
            if msg is None:
                return
            secret = msg.get("secret")
            if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), self.pipes.secret.encode()):
                return self.refuse(CloseCode.FORBIDDEN, "not a kernel of this server")
            if msg["token"] in self.pipes.kernels or len(self.pipes.kernels) >= MAX_KERNELS:
                return self.refuse(CloseCode.BAD_HELLO, "token in use, or too many kernels: reconnect")
            self.token = msg["token"]
            self.pipes.kernels[self.token] = self
            self.send('{"type":"welcome"}')
            return
        if isinstance(message, bytes):
            return self.refuse(CloseCode.BINARY_ONLY, "a kernel sends acks, as text")
        self.awaiting = max(0, self.awaiting - 1)
        if self.page is not None:
            self.page.send(message)

    def forward(self, data: bytes, seq: int) -> None:
        """A page's batch to the kernel, or refused (to the page, by its number) past the kernel's limits."""
        if self.awaiting >= MAX_AWAITING:
            return self._refused(seq, f"{MAX_AWAITING} batches already await their ack")
        if not self.rate.take(time.monotonic()):
            return self._refused(seq, f"more than {RATE:g} messages a second")
        self.awaiting += 1
        self.send_binary(data)

    def _refused(self, seq: int, why: str) -> None:
        if self.page is not None:
            self.page.send(json.dumps({"type": "ack", "seq": seq, "processed": False, "error": f"refused: {why}"}))

    def left(self) -> None:
        if self.token is not None and self.pipes.kernels.get(self.token) is self:
            del self.pipes.kernels[self.token]
        if self.page is not None:
            self.page.close(CloseCode.GONE, "the kernel's pipe closed: send over the comm")
            self.page = None


class PageEnd(_End):
    """A page's connection: its batches go to the kernel end that holds its token."""

    role = "page"

    def __init__(self, hub: Hub, pipes: Pipes, address: str) -> None:
        super().__init__(hub, pipes, address, max_size=packed.MAX_BATCH_MESSAGE)
        self.kernel: KernelEnd | None = None

    def on_message(self, message: str | bytes) -> None:
        if self.token is None:
            msg = self.hello(message)
            if msg is None:
                return
            kernel = self.pipes.kernels.get(msg["token"])
            if kernel is None:
                return self.refuse(CloseCode.UNKNOWN, "no kernel holds this pipe: send over the comm")
            self.token = msg["token"]
            if kernel.page is not None:  # a reconnect (or a copy of the page): the newest is the page
                kernel.page.kernel = None
                kernel.page.close(CloseCode.REPLACED, "another connection took this pipe")
            kernel.page, self.kernel = self, kernel
            self.send('{"type":"welcome"}')
            return
        if not isinstance(message, bytes):
            return self.refuse(CloseCode.BINARY_ONLY, "after the hello, batches only (binary)")
        seq = packed.batch_number(message)
        if seq is None:
            return self.refuse(CloseCode.BAD_HELLO, "a batch message starts with its number and header length")
        if self.kernel is not None:
            self.kernel.forward(message, seq)

    def left(self) -> None:
        kernel, self.kernel = self.kernel, None
        if kernel is not None and kernel.page is self:
            kernel.page = None


def pipe_handlers(hub: Hub, pipes: Pipes, base_url: str = "/") -> list[tuple[str, type, dict]]:
    """The pipe's two routes under ``base_url``, counted against the hub's connection caps like its sockets."""
    root = base_url.rstrip("/")
    return [
        (f"{root}/{KERNEL_ROUTE}", HubRoute, {"hub": hub, "socket": lambda h, a: KernelEnd(h, pipes, a)}),
        (f"{root}/{PAGE_ROUTE}", HubRoute, {"hub": hub, "socket": lambda h, a: PageEnd(h, pipes, a)}),
    ]
