"""Hugging Face Hub access: metadata only (model info, config files, safetensors headers), never weights.

huggingface_hub's client is synchronous, so each fetch runs in a worker thread. In front of it:
- a SQLite cache keyed by (repo, revision) with a TTL,
- single flight: however many callers ask for one repo at once, one upstream fetch runs,
- bounded retries with exponential backoff on 429, 5xx and network errors (Retry-After honoured),
- the hub's typed errors mapped to outcomes: gated, not found, or HubUnavailable.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    NotASafetensorsRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    SafetensorsParsingError,
)

from bot.core import quantization
from bot.core.metadata import RepoFile, RepoMetadata, Tensor
from bot.core.verdicts import GATED, NOT_FOUND
from bot.services.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 10.0
SIDE_FILES = ("tokenizer_config.json", "hf_quant_config.json")
MEMORY_CACHE_ENTRIES = 512  # hot repos answer from memory; SQLite keeps the rest across restarts


class HubUnavailable(RuntimeError):
    """Hugging Face could not be reached or kept failing: no verdict can be given right now."""


class RepoInaccessible(Exception):
    """The repo is gated or does not exist: a verdict in its own right."""

    def __init__(self, verdict: str, detail: str = ""):
        super().__init__(f"{verdict}: {detail}")
        self.verdict = verdict
        self.detail = detail


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    token: str | None = None
    cache_ttl_seconds: float = 3600
    timeout_seconds: float = 15.0
    max_retries: int = 3
    download_dir: Path = Path(".canrun/hub")
    backoff_base_seconds: float = 0.5
    max_concurrent_fetches: int = 16  # threads for the blocking client: hub calls wait on the network, not the CPU


class HubService:
    def __init__(self, settings: HubSettings, store: Store | None = None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.clock = clock
        self.api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
        self._inflight: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._memory: OrderedDict[tuple[str, str], tuple[dict[str, Any], float]] = OrderedDict()
        self.upstream_fetches = 0  # full fetch sets started (for benchmarks and tests)
        self._search_cache: dict[tuple, tuple[float, list[dict[str, Any]]]] = {}
        self._executor = ThreadPoolExecutor(settings.max_concurrent_fetches, thread_name_prefix="hub")

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def list_models(
        self, *, search: str | None = None, author: str | None = None, filter: str | None = None,
        limit: int = 20, ttl: float = 600.0,
    ) -> list[dict[str, Any]]:
        """Model search, most downloaded first, as plain dicts {id, downloads, tags}. Cached in memory."""
        key = (search, author, filter, limit)
        hit = self._search_cache.get(key)
        if hit is not None and self.clock() - hit[0] < ttl:
            return hit[1]

        def call() -> list[dict[str, Any]]:
            models = self.api.list_models(search=search, author=author, filter=filter, sort="downloads", limit=limit)
            return [{"id": m.id, "downloads": m.downloads or 0, "tags": list(m.tags or [])} for m in models]

        try:
            result = await self._in_thread(self._retrying, call)
        except HfHubHTTPError as e:
            raise HubUnavailable(f"model search failed: {_short(e)}") from e
        if len(self._search_cache) > 1000:  # bounded: searches are cheap to redo
            self._search_cache.clear()
        self._search_cache[key] = (self.clock(), result)
        return result

    async def fetch(self, repo_id: str, revision: str | None = None, *, refresh: bool = False) -> RepoMetadata:
        """Metadata for a repo. Raises RepoInaccessible (gated / not found) or HubUnavailable."""
        payload = await self._payload(repo_id, revision, refresh)
        if "access" in payload:
            raise RepoInaccessible(payload["access"], payload.get("detail", ""))
        return RepoMetadata.from_json(payload)

    async def _payload(self, repo_id: str, revision: str | None, refresh: bool) -> dict[str, Any]:
        key = (repo_id, revision or "")
        if not refresh:
            cached = self._memory.get(key)
            if cached is None and self.store is not None:
                cached = await self.store.cache_get(repo_id, revision)
            if cached is not None and self.clock() - cached[1] < self.settings.cache_ttl_seconds:
                self._remember(key, *cached)
                return cached[0]
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            payload = await self._fetch_upstream(repo_id, revision)
            fetched_at = self.clock()
            if self.store is not None:
                await self.store.cache_put(repo_id, revision, payload, fetched_at)
            self._remember(key, payload, fetched_at)
            future.set_result(payload)
            return payload
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[key]

    def _remember(self, key: tuple[str, str], payload: dict[str, Any], fetched_at: float) -> None:
        self._memory[key] = (payload, fetched_at)
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_CACHE_ENTRIES:
            self._memory.popitem(last=False)

    async def _fetch_upstream(self, repo_id: str, revision: str | None) -> dict[str, Any]:
        self.upstream_fetches += 1
        try:
            meta = await self._in_thread(self._read_repo, repo_id, revision)
        except GatedRepoError as e:
            return {"access": GATED, "detail": _server_message(e)}
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            return {"access": NOT_FOUND, "detail": _server_message(e)}
        except HubUnavailable:
            raise
        except Exception as e:  # an answer we did not expect: no verdict, but no crash either
            log.exception("unexpected failure reading %s from the hub", repo_id)
            raise HubUnavailable(f"unexpected answer from Hugging Face ({type(e).__name__})") from e
        return meta.to_json()

    # ---- the blocking part, run in a thread ------------------------------------------------------

    def _read_repo(self, repo_id: str, revision: str | None) -> RepoMetadata:
        info = self._retrying(lambda: self.api.model_info(repo_id, revision=revision, files_metadata=True))
        sha = info.sha or revision
        files = [RepoFile(s.rfilename, s.size) for s in (info.siblings or [])]
        card = info.card_data.to_dict() if info.card_data is not None else {}
        meta = RepoMetadata(
            repo_id=repo_id, revision=revision, sha=info.sha, files=files,
            hub_parameters=dict(info.safetensors.parameters) if info.safetensors else None,
            tags=list(info.tags or []), base_models=_base_models(card, info.tags or []),
            downloads=info.downloads or 0, library_name=info.library_name, pipeline_tag=info.pipeline_tag,
            gated=bool(info.gated),
        )
        names = {f.path for f in files}
        if "config.json" in names:
            try:
                meta.config = json.loads(self._download(repo_id, "config.json", sha))
                if not isinstance(meta.config, dict):
                    meta.config, meta.config_error = None, "it is not a JSON object"
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                meta.config_error = str(e)[:200]
        for name in SIDE_FILES:
            if name in names:
                try:
                    data = json.loads(self._download(repo_id, name, sha))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a broken side file shows up later as a failing gate, not as an outage
                if isinstance(data, dict):
                    setattr(meta, name.removesuffix(".json"), data)
        # The headers of the weight shards: the dry load builds its placeholders from them, and the static
        # gates read quantization tensors from them. Ranged reads, never the weights.
        if meta.weight_files or quantization.needs_tensor_names(meta.config, meta.hf_quant_config):
            meta.tensors = self._tensor_headers(repo_id, sha)
        return meta

    async def download_files(self, repo_id: str, revision: str | None, names: list[str]) -> dict[str, Path]:
        """Local paths of small repo files (tokenizer, templates) at a revision, through the download cache."""
        def fetch_all() -> dict[str, Path]:
            return {name: self._download_path(repo_id, name, revision) for name in names}

        try:
            return await self._in_thread(fetch_all)
        except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as e:
            raise HubUnavailable(f"a file of {repo_id} could not be read: {_short(e)}") from e

    def _download(self, repo_id: str, filename: str, revision: str | None) -> str:
        return self._download_path(repo_id, filename, revision).read_text(encoding="utf-8")

    def _download_path(self, repo_id: str, filename: str, revision: str | None) -> Path:
        path = self._retrying(
            lambda: hf_hub_download(
                repo_id, filename, revision=revision, endpoint=self.settings.endpoint,
                token=self.settings.token or False, cache_dir=self.settings.download_dir,
                etag_timeout=self.settings.timeout_seconds,
            )
        )
        return Path(path)

    def _tensor_headers(self, repo_id: str, revision: str | None) -> dict[str, Tensor] | None:
        """Tensor names, dtypes and shapes from the safetensors headers: ranged reads, not the weights."""
        try:
            st = self._retrying(lambda: self.api.get_safetensors_metadata(repo_id, revision=revision))
        except (NotASafetensorsRepoError, SafetensorsParsingError, EntryNotFoundError) as e:
            log.info("no readable safetensors headers for %s: %s", repo_id, e)
            return None
        tensors: dict[str, Tensor] = {}
        for file_meta in st.files_metadata.values():
            for name, t in file_meta.tensors.items():
                tensors[name] = Tensor(t.dtype, tuple(t.shape))
        return tensors

    def _retrying(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
                raise
            except Exception as e:  # noqa: BLE001 - sorted below into retryable or not
                if not _retryable(e):
                    if isinstance(e, HfHubHTTPError):
                        raise HubUnavailable(f"Hugging Face answered with an error: {_short(e)}") from e
                    raise
                attempt += 1
                if attempt > self.settings.max_retries:
                    raise HubUnavailable(f"could not reach Hugging Face ({_short(e)})") from e
                delay = _retry_after(e) or self.settings.backoff_base_seconds * 2 ** (attempt - 1)
                delay = min(MAX_BACKOFF_SECONDS, delay) * (1 + random.random() * 0.2)
                log.warning("hub call failed (%s), retry %d in %.1fs", _short(e), attempt, delay)
                time.sleep(delay)


def _retryable(e: Exception) -> bool:
    if isinstance(e, HfHubHTTPError):
        response = getattr(e, "response", None)
        return response is not None and response.status_code in RETRY_STATUSES
    # huggingface_hub's HTTP client raises its transport's own errors (connect, read timeout, ...):
    # recognise them by class name rather than importing a transport the hub may swap out.
    names = {cls.__name__ for cls in type(e).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "ConnectionError", "TimeoutError"}) or isinstance(e, OSError)


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _server_message(e: HfHubHTTPError) -> str:
    return (getattr(e, "server_message", None) or "")[:200]


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def _base_models(card: dict[str, Any], tags: list[str]) -> list[str]:
    """The repo's declared base models: card data first, then `base_model:` tags."""
    found: list[str] = []
    declared = card.get("base_model")
    for item in [declared] if isinstance(declared, str) else (declared or []):
        if isinstance(item, str) and item not in found:
            found.append(item)
    for tag in tags:
        if tag.startswith("base_model:"):
            value = tag.split(":")[-1]
            if "/" in value and value not in found:
                found.append(value)
    return found
