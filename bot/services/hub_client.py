"""huggingface_hub's HTTP client, one per thread.

huggingface_hub shares one client between every thread of the process, and closes it (`close_session`) whenever
any request fails to connect (huggingface_hub/utils/_http.py). Every request another thread has in flight on it
then dies with EBADF on its closed socket. canrun fetches from many threads at once (one per `/canrun`, the
safetensors headers eight at a time), so one unreachable host, or a fetch given up on that keeps retrying, would
cut off the others. Here each thread gets a client of its own: a failed connect closes only the client of the
thread it failed in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import huggingface_hub

log = logging.getLogger(__name__)

_installed = False
_install_lock = threading.Lock()


class PerThreadClient:
    """Stands in for the shared client: each attribute is the calling thread's own client's, made on first use.
    close() closes the calling thread's client only."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._local = threading.local()

    def own(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None or client.is_closed:
            client = self._local.client = self._factory()
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.own(), name)

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            client.close()


def install() -> None:
    """Make huggingface_hub hand out per-thread clients in this process (once; later calls do nothing). Its own
    default factory still makes each client (headers, redirects, timeouts as it sets them); a version without one
    keeps its shared client."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        from huggingface_hub.utils import _http

        default = getattr(_http, "default_client_factory", None)
        if default is None:
            log.debug("huggingface_hub %s has no default_client_factory: its shared client stays",
                      huggingface_hub.__version__)
            return
        huggingface_hub.set_client_factory(lambda: PerThreadClient(default))
