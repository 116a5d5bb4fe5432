"""Waiting in a test for what the bot does right after the request a test can see (a store write after a post)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Await check() until it returns something truthy; fails with its last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            assert value, f"still {value!r} after {timeout} s"
            return value
        await asyncio.sleep(0.02)
