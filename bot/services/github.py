"""A small GitHub REST client for suggestions: issue/PR search, file existence, latest release.

Unauthenticated GitHub allows 10 searches a minute, so answers are cached in SQLite and the client
stops asking until the advertised reset time once the allowance is used up. Every call has a
timeout; a failure is GitHubUnavailable, never an exception the caller has to guess about.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.services.store import Store

log = logging.getLogger(__name__)


class GitHubUnavailable(RuntimeError):
    pass


class GitHubClient:
    def __init__(self, api_base: str, *, token: str | None = None, store: Store | None = None,
                 timeout: float = 5.0, cache_ttl: float = 3600.0):
        self.api_base = api_base.rstrip("/")
        self.token = token
        self.store = store
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._session: aiohttp.ClientSession | None = None
        self._blocked_until: dict[str, float] = {}  # rate-limit resource -> unix time it resets

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def search_issues(self, repo: str, term: str, limit: int = 5) -> list[dict[str, Any]]:
        """Open issues and pull requests of `repo` that mention `term`."""
        q = f'"{term}" repo:{repo} is:open'
        data = await self._get_cached(f"search:{q}", "/search/issues", {"q": q, "per_page": str(limit)}, "search")
        return data.get("items", []) if isinstance(data, dict) else []

    async def file_exists(self, repo: str, path: str, ref: str | None = None) -> bool:
        params = {"ref": ref} if ref else {}
        data = await self._get_cached(f"contents:{repo}:{ref}:{path}", f"/repos/{repo}/contents/{quote(path)}", params, "core")
        return bool(data)

    async def file_text(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """A text file of `repo` at `ref` (the contents API's base64 body), None when it is not there."""
        params = {"ref": ref} if ref else {}
        data = await self._get_cached(f"text:{repo}:{ref}:{path}", f"/repos/{repo}/contents/{quote(path)}", params, "core")
        if not isinstance(data, dict) or data.get("encoding") != "base64":
            return None
        try:
            return base64.b64decode(data.get("content", "")).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None

    async def latest_release(self, repo: str) -> str | None:
        data = await self._get_cached(f"release:{repo}", f"/repos/{repo}/releases/latest", {}, "core")
        return data.get("tag_name") if isinstance(data, dict) else None

    # ---- internals ---------------------------------------------------------------------------

    async def _get_cached(self, key: str, path: str, params: dict[str, str], resource: str) -> Any:
        cached = await self.store.http_cache_get(key) if self.store else None
        if cached is not None and time.time() - cached[1] < self.cache_ttl:
            return cached[0]
        if time.time() < await self._blocked(resource):
            if cached is not None:
                return cached[0]  # stale beats nothing while rate limited
            raise GitHubUnavailable("GitHub's rate limit is used up for now")
        try:
            data = await asyncio.wait_for(self._get(path, params, resource), self.timeout)
        except (TimeoutError, aiohttp.ClientError, GitHubUnavailable) as e:
            if cached is not None:
                return cached[0]
            raise GitHubUnavailable(str(e) or "GitHub did not answer in time") from e
        if self.store is not None:
            await self.store.http_cache_put(key, data, time.time())
        return data

    async def _blocked(self, resource: str) -> float:
        """When the rate limit of `resource` resets. Kept in the store so another process knows too."""
        until = self._blocked_until.get(resource, 0.0)
        if not until and self.store is not None:
            saved = await self.store.http_cache_get(f"rate-limit:{resource}")
            until = float(saved[0]) if saved else 0.0
            self._blocked_until[resource] = until
        return until

    async def _get(self, path: str, params: dict[str, str], resource: str) -> Any:
        if self._session is None:
            headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                       "User-Agent": "canrun"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(headers=headers)
        async with self._session.get(self.api_base + path, params=params) as resp:
            if self._note_rate_limit(resp, resource) and self.store is not None:
                await self.store.http_cache_put(f"rate-limit:{resource}", self._blocked_until[resource], time.time())
            if resp.status == 404:
                return None  # "no such file / no release" is an answer, and worth caching
            if resp.status in (403, 429) and (resp.headers.get("X-RateLimit-Remaining") == "0" or resp.status == 429):
                raise GitHubUnavailable("GitHub's rate limit is used up for now")
            if resp.status >= 400:
                raise GitHubUnavailable(f"GitHub answered {resp.status}")
            return await resp.json(content_type=None)

    def _note_rate_limit(self, resp: aiohttp.ClientResponse, resource: str) -> bool:
        """Remember when the allowance resets, if it is used up. True when it is."""
        blocked = False
        if resp.headers.get("X-RateLimit-Remaining") == "0":
            blocked = True
            try:
                self._blocked_until[resource] = float(resp.headers.get("X-RateLimit-Reset", "0"))
            except ValueError:
                self._blocked_until[resource] = time.time() + 60
        retry_after = resp.headers.get("Retry-After")
        if retry_after and retry_after.isdigit():
            blocked = True
            self._blocked_until[resource] = time.time() + int(retry_after)
        return blocked
