"""Model-id suggestions as a learner types: fast, de-duplicated, and never empty-handed on a slow hub.

Discord gives an autocomplete 3 seconds. A search that is not back within `timeout` is left running
(its answer fills the cache for the next keystroke) and the best cached answer is returned instead.
"""

from __future__ import annotations

import asyncio
import logging

from bot.core.repo_id import RepoIdError, parse_repo
from bot.services.hub import HubService, HubUnavailable
from bot.services.memo import RecentCache, SingleFlight

log = logging.getLogger(__name__)
MAX_RESULTS = 25
CACHE_ENTRIES = 256


class ModelSearch:
    def __init__(self, hub: HubService, timeout: float = 2.0):
        self.hub = hub
        self.timeout = timeout
        self._cache: RecentCache[str, list[str]] = RecentCache(CACHE_ENTRIES)
        self._searches: SingleFlight[str, list[str]] = SingleFlight(
            lambda: HubUnavailable("the model search was interrupted"))

    async def complete(self, text: str) -> list[str]:
        text = text.strip()
        pasted = _as_repo_id(text)
        query = pasted or text
        if len(query) < 2:
            return [pasted] if pasted else []
        key = query.lower()
        found = self._cache.get(key)
        if found is None:
            # In a task of its own, so that a search past the timeout goes on and fills the cache.
            task = asyncio.ensure_future(self._searches.run(key, lambda: self._search(key, query)))
            task.add_done_callback(_consume_error)  # a late failure is only logged
            try:
                found = await asyncio.wait_for(asyncio.shield(task), self.timeout)
            except (TimeoutError, HubUnavailable):
                found = self._from_cache(key)
        ids = ([pasted] if pasted else []) + [r for r in found if r != pasted]
        return ids[:MAX_RESULTS]

    async def _search(self, key: str, query: str) -> list[str]:
        models = await self.hub.list_models(search=query, limit=MAX_RESULTS)
        ids = [m["id"] for m in models]
        self._cache.put(key, ids)
        return ids

    def _from_cache(self, key: str) -> list[str]:
        """Results of the longest cached prefix of this query that still match it."""
        for n in range(len(key) - 1, 1, -1):
            hit = self._cache.get(key[:n])
            if hit is not None:
                return [r for r in hit if key in r.lower()]
        return []


def _consume_error(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("model search failed: %s", task.exception())


def _as_repo_id(text: str) -> str | None:
    """A pasted URL or full id becomes its normalised id, offered first."""
    if "/" not in text:
        return None
    try:
        return parse_repo(text).repo_id
    except RepoIdError:
        return None
