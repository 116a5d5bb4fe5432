"""huggingface_hub's shared HTTP client, kept open.

huggingface_hub shares one client between every thread of the process, and closes it (`close_session`) whenever
any request fails to connect (huggingface_hub/utils/_http.py). Every request another thread has in flight on it
then dies with EBADF on its closed socket. canrun fetches from many threads at once (one per `/canrun`, the
safetensors headers eight at a time), so one unreachable host, or a fetch given up on that keeps retrying, would
cut off the others. Here the client stays open: its connection pool already drops a connection that fails, so
the close only ever hurt (a changed proxy or CA bundle now needs a restart). One client for the process, as
huggingface_hub meant it, keeps connections reused across threads; only a forked child replaces what it inherited.
install() runs before the first request (HubService, the trial worker, the tests' conftest): installing closes the
client huggingface_hub had until then.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import huggingface_hub

log = logging.getLogger(__name__)

_installed = False
_install_lock = threading.Lock()


class KeptOpenClient:
    """Stands in for huggingface_hub's client: every attribute is the one client's, and close() leaves it open.
    huggingface_hub asks its factory (`for_this_process`) for it again after each close; a process forked after
    the client was made gets a new one there, and closes its copy of the parent's connections."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._lock = threading.Lock()
        self._client = factory()
        self._pid = os.getpid()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self) -> None:
        pass  # see the module's doc

    def for_this_process(self) -> KeptOpenClient:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's connections are not ours to share
                inherited, self._client, self._pid = self._client, self._factory(), os.getpid()
                inherited.close()
        return self


def install() -> None:
    """Make huggingface_hub's client one that close() leaves open, in this process (once; later calls do nothing).
    huggingface_hub's own default factory still makes it (headers, redirects, timeouts as it sets them); a
    version without one keeps its usual client."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        from huggingface_hub.utils import _http

        default = getattr(_http, "default_client_factory", None)
        if default is None:
            log.debug("huggingface_hub %s has no default_client_factory: its client stays as it is",
                      huggingface_hub.__version__)
            return
        huggingface_hub.set_client_factory(KeptOpenClient(default).for_this_process)
