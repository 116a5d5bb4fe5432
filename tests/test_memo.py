"""The one in-memory cache and the one single flight that the hub, the dry load and the autocomplete share."""

from __future__ import annotations

import asyncio

import pytest

from bot.services.memo import RecentCache, SingleFlight


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_goes_first():
    cache: RecentCache[str, int] = RecentCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_answers_expire_from_the_time_they_were_stored_with():
    clock = Clock()
    cache: RecentCache[str, str] = RecentCache(10, ttl=60, clock=clock)
    cache.put("fresh", "x")
    cache.put("fetched earlier", "y", stored_at=clock.now - 50)  # e.g. read back from SQLite
    clock.now += 20
    assert cache.get("fresh") == "x" and cache.get("fetched earlier") is None
    clock.now += 40
    assert cache.get("fresh") is None and len(cache) == 0


def test_a_cache_holds_something():
    with pytest.raises(ValueError):
        RecentCache(0)


async def test_one_call_for_many_callers():
    flight: SingleFlight[str, int] = SingleFlight(lambda: RuntimeError("interrupted"))
    calls, release = [], asyncio.Event()

    async def call() -> int:
        calls.append(1)
        await release.wait()
        return 42

    waiters = [asyncio.create_task(flight.run("k", call)) for _ in range(5)]
    await asyncio.sleep(0)
    assert "k" in flight
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 5 and len(calls) == 1
    assert "k" not in flight
    assert await flight.run("k", call) == 42 and len(calls) == 2  # a later ask calls again


async def owner_and_waiter(flight: SingleFlight[str, int], outcome: Exception | None):
    """Two callers of one key: the owner runs the call (it raises `outcome` soon, or sleeps a minute when None), the
    waiter joins once the call runs."""
    started = asyncio.Event()

    async def call() -> int:
        started.set()
        await asyncio.sleep(0.01 if outcome else 60)
        raise outcome or AssertionError("not reached")

    owner = asyncio.create_task(flight.run("k", call))
    await started.wait()
    waiter = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    return owner, waiter


async def test_waiters_share_the_error():
    flight: SingleFlight[str, int] = SingleFlight(lambda: RuntimeError("interrupted"))
    for task in await owner_and_waiter(flight, ValueError("upstream said no")):
        with pytest.raises(ValueError, match="upstream said no"):
            await task


async def test_a_cancelled_caller_does_not_cancel_the_others():
    flight: SingleFlight[str, int] = SingleFlight(lambda: LookupError("interrupted"))
    owner, waiter = await owner_and_waiter(flight, None)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    with pytest.raises(LookupError, match="interrupted"):
        await waiter
    assert not waiter.cancelled() and "k" not in flight
