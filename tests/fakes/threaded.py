"""Run an aiohttp application on 127.0.0.1 in a background thread with its own event loop.

A thread, not the test's loop: the code under test sometimes runs its own loop (`asyncio.run` in the
CLI) or calls synchronous clients, and the fake must keep answering while it does.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedServer:
    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def start(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        await self._runner.cleanup()
        await cancel_the_rest()

    async def _serve(self) -> web.AppRunner:
        # A short shutdown timeout, so that a client that stopped reading cannot stall stop().
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner


class LoopThread:
    """An event loop in its own thread, for async fakes that must not share the code under test's loop
    (as the real service would be on another machine). `await lt.run(coro)` runs coro there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-loop", daemon=True)
        self._thread.start()

    def run(self, coro):
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def cancel_the_rest() -> None:
    """Cancel and await what still runs on this loop (e.g. a handler sleeping out an injected delay for a client
    that left), so that closing the loop destroys no pending task."""
    rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
