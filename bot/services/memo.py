"""Remembering answers in memory: a bounded cache (least recently used dropped first, optionally for a time only)
and single flight (however many callers ask for one key at once, one call runs and all get its answer).

The hub's metadata and searches, the dry load's outcomes and the autocomplete's searches use them; what lasts
across restarts is SQLite's job (services/store.py), not this module's.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentCache(Generic[K, V]):
    """At most `entries` answers; the least recently used goes first. With a `ttl`, an answer is gone `ttl`
    seconds after the time it was stored with (by default when it was put; an answer read back from SQLite keeps
    the time it was fetched)."""

    def __init__(self, entries: int, ttl: float | None = None, clock: Callable[[], float] = time.monotonic):
        if entries < 1:
            raise ValueError("a cache holds at least one entry")
        self.entries, self.ttl, self.clock = entries, ttl, clock
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if self.ttl is not None and self.clock() - hit[1] >= self.ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return hit[0]

    def put(self, key: K, value: V, stored_at: float | None = None) -> None:
        self._items[key] = (value, self.clock() if stored_at is None else stored_at)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class SingleFlight(Generic[K, V]):
    """One call per key at a time: a caller that asks while the key's call runs waits for that call's answer, or
    its error. If the caller running it is cancelled, the others get `interrupted()` rather than a cancellation
    that was not theirs."""

    def __init__(self, interrupted: Callable[[], BaseException]):
        self.interrupted = interrupted
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        existing = self._running.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await call()
        except BaseException as e:
            future.set_exception(self.interrupted() if isinstance(e, asyncio.CancelledError) else e)
            future.exception()  # marked as retrieved: nobody else may be waiting
            raise
        finally:
            del self._running[key]
        future.set_result(result)
        return result

    def __contains__(self, key: K) -> bool:
        return key in self._running
