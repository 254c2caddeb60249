"""How hub processes share class events: nothing to share in one process, Redis pub/sub across several.

A backplane publishes each class event to the other hubs and keeps the room's latest state for late joiners.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Callable

from smartsession.hub.protocol import QuietLog, dumps, parse_json
from smartsession.hub.relay import BadRelay, backplane_key, check_event, seal, seal_entry, unseal, unseal_entry
from smartsession.schema import SchemaError

log = logging.getLogger("smartsession.hub")

#: Called with (class_id, event, text) for every event another hub published; ``text`` is the event's JSON as
#: that hub serialised it, to pass on as it is.
OnEvent = Callable[[str, dict[str, Any], str], None]
#: Called when Redis is reachable again after an outage: publish what this hub knows (Redis may have lost it).
OnReconnect = Callable[[], None]


class LocalBackplane:
    """One hub process: its own room state is the whole truth, nothing to send anywhere."""

    async def start(self, on_event: OnEvent, on_reconnect: OnReconnect | None = None, secret: str = "") -> None:
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

    Nothing from Redis is trusted (relay.py): batches and room entries are sealed with the deployment's secret,
    and what opens is checked like a client's message; anything else is dropped with one log line (at most a
    few per minute, however many arrive), and a bad room entry is skipped, not fatal.

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
        self._key = b""
        self.dropped = 0  # backplane messages and room entries refused, for health and tests
        self._quiet = QuietLog(log.warning, per_period=3, period=60.0)

    async def start(self, on_event: OnEvent, on_reconnect: OnReconnect | None = None, secret: str = "") -> None:
        import redis.asyncio as aioredis

        self._key = backplane_key(secret)

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
                    class_id = message["channel"].decode(errors="replace")[prefix:]
                    for event in self._opened(class_id, message["data"]):
                        on_event(class_id, event, dumps(event))
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(self.retry)

    def _opened(self, class_id: str, data: bytes) -> list[dict[str, Any]]:
        """The checked events of a batch from another hub; none from this hub, none unsealed or malformed."""
        now = time.time()
        try:
            origin, texts = unseal(self._key, class_id, data, now)
        except BadRelay as err:
            self._drop(class_id, str(err))
            return []
        if origin == self.origin:
            return []
        events = []
        for text in texts:
            try:
                events.append(check_event(class_id, parse_json(text), now))
            except (ValueError, SchemaError) as err:  # parse_json's JsonError is a ValueError
                self._drop(class_id, f"a sealed event that is not valid: {err}")
        return events

    def _drop(self, class_id: str, why: str) -> None:
        self.dropped += 1
        self._quiet("dropped a backplane message for class %.64r: %s", class_id, why)

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
    def _field(event: dict[str, Any]) -> str | None:
        """The room hash's field the event updates; None for a notice that is no part of the room (``revoked``)."""
        if event["type"] == "class":
            return "class"
        if event["type"] == "revoked":
            return None
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
                latest = {name: seal_entry(self._key, class_id, name, text) for name, text in events if name}
                if latest:
                    pipe.hset(f"{self.PREFIX}room:{class_id}", mapping=latest)  # a field's latest wins
                pipe.publish(f"{self.PREFIX}class:{class_id}",
                             seal(self._key, class_id, self.origin, [t for _, t in events], time.time()))
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
        now = time.time()
        events = []
        for name, value in raw.items():
            try:
                text = unseal_entry(self._key, class_id, name.decode(errors="replace"), value)
                event = check_event(class_id, parse_json(text), now, max_clock_skew=float("inf"))
            except (BadRelay, ValueError, SchemaError) as err:
                self._drop(class_id, f"room entry skipped: {err}")
                continue
            if name.decode(errors="replace") == self._field(event):
                events.append(event)
            else:
                self._drop(class_id, f"room entry {name[:80]!r} holds a {event['type']} event")
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
