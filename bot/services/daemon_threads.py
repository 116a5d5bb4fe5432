"""Blocking calls in daemon threads: an abandoned network call never holds the process open.

concurrent.futures' workers are joined when the interpreter exits, so a Ctrl-C during a slow Hugging Face
request used to wait for that request (and a second Ctrl-C printed a `threading` traceback). These threads
are daemons: once nobody awaits their answer, the process may exit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class DaemonRunner:
    """Runs blocking functions for an event loop, at most `limit` at a time, each in a daemon thread."""

    def __init__(self, limit: int, name: str):
        self._slots = threading.BoundedSemaphore(limit)
        self._name = name

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if future.cancelled():
                return
            future.set_result(value) if ok else future.set_exception(value)

        def work() -> None:
            with self._slots:
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                    outcome = (False, e)
                else:
                    outcome = (True, result)
            try:
                loop.call_soon_threadsafe(settle, *outcome)
            except RuntimeError:
                pass  # the loop closed meanwhile: nobody waits any more

        threading.Thread(target=work, name=self._name, daemon=True).start()
        return await future


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """fn over items in daemon threads, results in order; the first exception is raised after all finish."""
    items = list(items)
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(items)):
        todo.put(i)

    def work() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(workers, len(items))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
