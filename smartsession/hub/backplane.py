"""How hub processes share class events: nothing to share in one process, Redis pub/sub across several.

A backplane publishes each class event to the other hubs and keeps the room's latest state for late joiners.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any, Callable

log = logging.getLogger("smartsession.hub")

#: Called with (class_id, event) for every event another hub published.
OnEvent = Callable[[str, dict[str, Any]], None]


class LocalBackplane:
    """One hub process: its own room state is the whole truth, nothing to send anywhere."""

    async def start(self, on_event: OnEvent) -> None:
        pass

    def publish(self, class_id: str, event: dict[str, Any]) -> None:
        pass

    async def load(self, class_id: str) -> list[dict[str, Any]]:
        return []

    async def stop(self) -> None:
        pass


class RedisBackplane:
    """Hubs sharing one Redis: a pub/sub channel per class for fan-out, a hash per class for its latest state.

    The hash ``smartsession:room:{class_id}`` holds the ``class`` event and, per student, the latest
    ``state``, ``presence`` and ``student`` events, so a hub that never saw the class rebuilds the full room.
    """

    PREFIX = "smartsession:"

    def __init__(self, url: str):
        self.url = url
        self.origin = secrets.token_hex(6)
        self._redis = None
        self._pubsub = None
        self._task: asyncio.Task | None = None
        self._pending: list[tuple[str, str, str, str]] = []
        self._flush_scheduled = False
        self._flushing: set[asyncio.Task] = set()  # held until done: the loop keeps only weak references

    async def start(self, on_event: OnEvent) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url)
        try:
            await self._redis.ping()
        except Exception as exc:
            raise RuntimeError(f"cannot reach Redis at {self.url}: start redis-server or fix --redis-url ({exc})")
        self._pubsub = self._redis.pubsub()
        await self._pubsub.psubscribe(f"{self.PREFIX}class:*")
        self._task = asyncio.create_task(self._listen(on_event))

    async def _listen(self, on_event: OnEvent) -> None:
        prefix = len(f"{self.PREFIX}class:")
        async for message in self._pubsub.listen():
            if message.get("type") != "pmessage":
                continue
            try:
                origin, _, body = message["data"].decode().partition(" ")
                if origin == self.origin:
                    continue
                on_event(message["channel"].decode()[prefix:], json.loads(body))
            except Exception:
                log.exception("dropped a malformed backplane message")

    @staticmethod
    def _field(event: dict[str, Any]) -> str:
        if event["type"] == "class":
            return "class"
        return f"{event['type']}:{event['student_id']}"

    def publish(self, class_id: str, event: dict[str, Any]) -> None:
        """Queue the event; queued events go out in one pipeline per loop iteration."""
        body = json.dumps(event, separators=(",", ":"))
        self._pending.append((class_id, self._field(event), body, f"{self.origin} {body}"))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        pending, self._pending, self._flush_scheduled = self._pending, [], False
        if not pending or self._redis is None:
            return
        pipe = self._redis.pipeline(transaction=False)
        for class_id, field, body, wire in pending:
            pipe.hset(f"{self.PREFIX}room:{class_id}", field, body)
            pipe.publish(f"{self.PREFIX}class:{class_id}", wire)
        try:
            await pipe.execute()
        except Exception:
            log.exception("could not publish %d events to Redis", len(pending))

    async def load(self, class_id: str) -> list[dict[str, Any]]:
        """The room's events from Redis, ``class`` first, so applying them in order rebuilds it."""
        raw = await self._redis.hgetall(f"{self.PREFIX}room:{class_id}")
        events = [json.loads(v) for v in raw.values()]
        order = {"class": 0, "presence": 1, "student": 2, "state": 3}
        return sorted(events, key=lambda e: order[e["type"]])

    async def stop(self) -> None:
        if self._redis is None:
            return
        await self._flush()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self._pubsub.aclose()
        await self._redis.aclose()
        self._redis = None


def make_backplane(redis_url: str | None) -> LocalBackplane | RedisBackplane:
    return RedisBackplane(redis_url) if redis_url else LocalBackplane()
