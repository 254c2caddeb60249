"""How hub processes share class events: nothing to share in one process, Redis pub/sub across several.

A backplane publishes each class event to the other hubs and keeps the room's latest state for late joiners.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any, Callable

log = logging.getLogger("smartsession.hub")

#: Called with (class_id, event, text) for every event another hub published; ``text`` is the event's JSON as
#: that hub serialised it, to pass on as it is.
OnEvent = Callable[[str, dict[str, Any], str], None]
#: Called when Redis is reachable again after an outage: publish what this hub knows (Redis may have lost it).
OnReconnect = Callable[[], None]


class LocalBackplane:
    """One hub process: its own room state is the whole truth, nothing to send anywhere."""

    async def start(self, on_event: OnEvent, on_reconnect: OnReconnect | None = None) -> None:
        pass

    async def watch(self, class_id: str) -> None:
        pass

    def publish(self, class_id: str, event: dict[str, Any], text: str) -> None:
        pass

    async def load(self, class_id: str) -> list[dict[str, Any]]:
        return []

    async def stop(self) -> None:
        pass


class RedisBackplane:
    """Hubs sharing one Redis: a pub/sub channel per class for fan-out, a hash per class for its latest state.

    A hub subscribes to the classes it holds (``watch``), not to all: with a pattern subscription every hub
    parsed every other hub's events, a district's worth of them, to drop most.

    The hash ``smartsession:room:{class_id}`` holds the ``class`` event and, per student, the latest
    ``state``, ``presence`` and ``student`` events, so a hub that never saw the class rebuilds the full room.

    Events are gathered for ``flush_interval`` seconds and go out per class: one HSET of the class's changed
    fields and one PUBLISH of its events, one JSON text a line. A command and a reply for each event (two of
    each per state) cost a node more than the states' own routing.

    When Redis goes away the hub keeps its own classes running: events for other hubs are dropped (nothing
    piles up; the store has every state), the subscription is retried every ``retry`` seconds, and once it is
    back ``on_reconnect`` republishes what this hub knows. One log line when it goes, one when it is back.
    """

    retry = 1.0
    flush_interval = 0.02  # seconds: a state waits 10 ms on average for the other hubs' teachers

    PREFIX = "smartsession:"

    def __init__(self, url: str):
        self.url = url
        self.origin = secrets.token_hex(6)
        self._redis = None
        self._pubsub = None
        self._task: asyncio.Task | None = None
        self._pending: dict[str, list[tuple[str, str]]] = {}  # class_id: [(hash field, event text)]
        self._flush_scheduled = False
        self._flushing: set[asyncio.Task] = set()  # held until done: the loop keeps only weak references
        self.down_since: float | None = None
        self._on_reconnect: OnReconnect | None = None
        self._watched: set[str] = set()  # channels of the classes this hub holds
        # A channel nobody publishes to, subscribed from the start: a subscription with no channel ends listen().
        self._own = f"{self.PREFIX}hub:{self.origin}"

    async def start(self, on_event: OnEvent, on_reconnect: OnReconnect | None = None) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url)
        try:
            await self._redis.ping()
        except Exception as exc:
            raise RuntimeError(f"cannot reach Redis at {self.url}: start redis-server or fix --redis-url ({exc})")
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self._own)
        self._on_reconnect = on_reconnect
        self._task = asyncio.create_task(self._listen(on_event))

    async def watch(self, class_id: str) -> None:
        """Receive the class's events from now on (before its room is read from Redis, so none falls between)."""
        channel = f"{self.PREFIX}class:{class_id}"
        if channel in self._watched:
            return
        self._watched.add(channel)  # subscribed again after an outage, whether or not this one goes through
        try:
            await self._pubsub.subscribe(channel)
        except Exception as exc:
            self._down(exc)

    async def _listen(self, on_event: OnEvent) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

        prefix = len(f"{self.PREFIX}class:")
        while True:
            try:
                if self.down_since is not None:
                    await self._pubsub.subscribe(self._own, *self._watched)
                    self._back()
                async for message in self._pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        class_id = message["channel"].decode()[prefix:]
                        origin, *texts = message["data"].decode().split("\n")
                        if origin == self.origin:
                            continue
                        for text in texts:
                            on_event(class_id, json.loads(text), text)
                    except Exception:
                        log.exception("dropped a malformed backplane message")
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(self.retry)

    def _down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.error("Redis unreachable at %s (%s): this hub's classes go on; events to and from other hubs "
                      "are dropped until it is back, retrying", self.url, exc)

    def _back(self) -> None:
        if self.down_since is not None:
            log.warning("Redis is back after %.1f s: republishing this hub's classes",
                        time.monotonic() - self.down_since)
            self.down_since = None
            if self._on_reconnect is not None:
                self._on_reconnect()

    @staticmethod
    def _field(event: dict[str, Any]) -> str:
        if event["type"] == "class":
            return "class"
        return f"{event['type']}:{event['student_id']}"

    def publish(self, class_id: str, event: dict[str, Any], text: str) -> None:
        """Queue the event, serialised as ``text`` (compact JSON: no line breaks); out within ``flush_interval``."""
        self._pending.setdefault(class_id, []).append((self._field(event), text))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.flush_interval, self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        pending, self._pending, self._flush_scheduled = self._pending, {}, False
        if not pending or self._redis is None:
            return
        # Twice: after a Redis restart the first try meets a pooled connection the old server closed.
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            for class_id, events in pending.items():
                pipe.hset(f"{self.PREFIX}room:{class_id}", mapping=dict(events))  # a field's latest wins
                pipe.publish(f"{self.PREFIX}class:{class_id}", "\n".join([self.origin, *(t for _, t in events)]))
            try:
                await pipe.execute()
            except Exception as exc:
                if attempt == 2:
                    self._down(exc)  # dropped: live relays only, the store has every state
            else:
                self._back()
                return

    async def load(self, class_id: str) -> list[dict[str, Any]]:
        """The room's events from Redis, ``class`` first, so applying them in order rebuilds it."""
        try:
            raw = await self._redis.hgetall(f"{self.PREFIX}room:{class_id}")
        except Exception as exc:
            self._down(exc)  # the room comes from the store alone; live events fill it in once Redis is back
            return []
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
