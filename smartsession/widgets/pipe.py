"""A kernel's end of serve's face pipe (``serve/pipe.py``, ``facepipe.py``): batches of packed faces from the
page straight to the camera widget, its acks straight back, past Jupyter's messaging.

``FacePipe.from_environment(camera)`` when this kernel is one of ``smartsession serve``'s; ``start()`` on the
kernel's event loop, which then also runs every batch's analysis, as the comm handler does. While connected, the
camera's ``pipe`` trait tells the page where to send; on any loss the trait empties (the page goes back to the
comm) and the pipe reconnects with a new token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
from typing import Any

from smartsession.facepipe import ENV_PAGE_PATH, ENV_SECRET, ENV_URL, CloseCode
from smartsession.hub.client import send_soon, ssl_context
from smartsession.vision import packed

log = logging.getLogger(__name__)


class FacePipe:
    def __init__(self, camera: Any, url: str, secret: str, page_path: str, cafile: str | None = None,
                 backoff: tuple[float, float] = (0.5, 15.0)) -> None:
        self.camera, self.url, self.secret, self.page_path = camera, url, secret, page_path
        self.cafile = cafile
        self.backoff = backoff
        self.connected = asyncio.Event()
        self._ws: Any = None
        self._task: asyncio.Task | None = None
        self._sending: set[asyncio.Task] = set()

    @classmethod
    def from_environment(cls, camera: Any) -> "FacePipe | None":
        url, secret, path = (os.environ.get(name, "") for name in (ENV_URL, ENV_SECRET, ENV_PAGE_PATH))
        if not (url and secret and path):
            return None
        return cls(camera, url, secret, path, cafile=os.environ.get("SMARTSESSION_HUB_CAFILE") or None)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Connect, and keep connecting, on ``loop`` (default: the running one)."""
        if self._task is None:
            self._task = (loop or asyncio.get_running_loop()).create_task(self._run())

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.get_loop().is_closed():
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def _run(self) -> None:
        import websockets

        delay = self.backoff[0]
        while True:
            token = secrets.token_urlsafe(32)  # a new one each time: a page holding an old one is refused
            try:
                async with websockets.connect(
                    self.url, ssl=ssl_context(self.url, self.cafile), open_timeout=10, compression=None,
                    max_size=packed.MAX_BATCH_MESSAGE, ping_interval=20, ping_timeout=20,
                ) as ws:
                    await ws.send(json.dumps({"type": "hello", "token": token, "secret": self.secret}))
                    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
                        raise ValueError(f"expected a welcome, got {welcome!r:.80}")
                    self._open(ws, token)
                    delay = self.backoff[0]
                    async for data in ws:
                        if isinstance(data, bytes):
                            self.camera.receive_batch(data)
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == CloseCode.FORBIDDEN:
                    log.warning("serve refused this kernel's face pipe (%s): batches go over the comm", exc.rcvd)
                    return
                log.info("face pipe closed (%s): reconnecting", exc)
            except Exception as exc:  # unreachable, refused, a bad welcome: the comm carries batches meanwhile
                log.info("face pipe at %s unavailable (%s): retrying in %.1f s", self.url, exc, delay)
            finally:
                self._close()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff[1])

    def _open(self, ws: Any, token: str) -> None:
        self._ws = ws
        self.camera._pipe_reply = self._reply
        self.camera.pipe = {"path": self.page_path, "token": token}
        self.connected.set()

    def _close(self) -> None:
        self._ws = None
        self.connected.clear()
        self.camera._pipe_reply = None
        if self.camera.comm is not None:
            self.camera.pipe = {}

    def _reply(self, ack: dict) -> None:
        if self._ws is not None:
            send_soon(self._ws, json.dumps(ack, separators=(",", ":")), self._sending)
