"""Hugging Face Hub access: metadata only (model info, config files, safetensors headers), never weights.

huggingface_hub's client is synchronous, so each fetch runs in a daemon thread (an abandoned call never holds
the process: Ctrl-C exits at once). In front of it:
- a SQLite cache keyed by (repo, revision, who asked) with a TTL: an answer read with a token is never given
  to a caller without it, and the reverse; small files are cached per token too, since huggingface_hub hands
  out a cached file of a commit without asking the hub again (a token without access would read it);
- single flight: however many callers ask for one repo at once, one upstream fetch runs,
- bounded retries with exponential backoff on 429, 5xx and network errors (Retry-After honoured), all within
  one overall deadline per operation,
- the hub's typed errors mapped to outcomes: gated, not found, HubRateLimited or HubUnavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import logging
import random
import time
from fnmatch import fnmatch
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    SafetensorsParsingError,
)

from bot.core.metadata import MLX_WEIGHT_PATTERN, RepoFile, RepoMetadata, Tensor
from bot.core.units import human_bytes
from bot.core.verdicts import GATED, NOT_FOUND
from bot.services import hub_client
from bot.services.daemon_threads import DaemonRunner, parallel_map
from bot.services.memo import RecentCache, SingleFlight
from bot.services.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 10.0
SIDE_FILES = ("tokenizer_config.json", "hf_quant_config.json")
# config.json and the side files are read whole into memory: a repo (anyone may ask about any repo) could hold a
# multi-GB "config.json". Real ones are kilobytes; a tokenizer_config.json with a long chat template, a few MB.
JSON_FILE_LIMIT_BYTES = 16 * 1024**2
MEMORY_CACHE_ENTRIES = 512  # hot repos answer from memory; SQLite keeps the rest across restarts
SEARCH_CACHE_ENTRIES, SEARCH_TTL_SECONDS = 1000, 600.0  # searches are cheap to redo: memory only


class HubUnavailable(RuntimeError):
    """Hugging Face could not be reached or kept failing: no verdict can be given right now."""


class HubRateLimited(HubUnavailable):
    """Hugging Face answered 429 until canrun gave up; `retry_after` seconds is its own hint, when it gave one."""

    def __init__(self, retry_after: float | None):
        wait = f"try again in {_duration(retry_after)}" if retry_after else "try again in a minute or two"
        super().__init__(f"Hugging Face is rate limiting requests from this machine; {wait}")
        self.retry_after = retry_after


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
    deadline_seconds: float = 60.0  # one whole operation (a repo's metadata), retries included


class HubService:
    def __init__(self, settings: HubSettings, store: Store | None = None, clock: Callable[[], float] = time.time):
        hub_client.install()  # a failed connect in one fetch's thread must not close the client under the others
        self.settings = settings
        self.store = store
        self.clock = clock
        self.api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
        self.identity = token_identity(settings.token)  # part of every cache key
        self._fetches: SingleFlight[tuple[str, str], dict[str, Any]] = SingleFlight(
            lambda: HubUnavailable("the request to Hugging Face was interrupted"))
        # (payload, fetched_at) by (repo, revision#identity), fresh for the cache TTL from when it was fetched.
        self._memory: RecentCache[tuple[str, str], tuple[dict[str, Any], float]] = RecentCache(
            MEMORY_CACHE_ENTRIES, settings.cache_ttl_seconds, clock)
        self.upstream_fetches = 0  # full fetch sets started (for benchmarks and tests)
        self._searches: RecentCache[tuple, list[dict[str, Any]]] = RecentCache(
            SEARCH_CACHE_ENTRIES, SEARCH_TTL_SECONDS, clock)
        self._threads = DaemonRunner(settings.max_concurrent_fetches, "hub")
        self._local = threading.local()  # the deadline of the operation a thread works for

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a daemon thread, given up after the overall deadline (the thread is then abandoned)."""
        deadline = time.monotonic() + self.settings.deadline_seconds

        def with_deadline() -> T:
            self._local.deadline = deadline
            return fn(*args)

        try:
            return await asyncio.wait_for(self._threads.run(with_deadline), self.settings.deadline_seconds)
        except TimeoutError:
            raise HubUnavailable(
                f"Hugging Face did not answer within {self.settings.deadline_seconds:.0f} s ([hub] deadline_seconds)"
            ) from None

    def close(self) -> None:
        pass  # nothing to release: abandoned daemon threads end with their request

    async def list_models(
        self, *, search: str | None = None, author: str | None = None, filter: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Model search, most downloaded first, as plain dicts {id, downloads, tags}. Cached in memory."""
        key = (search, author, filter, limit)
        hit = self._searches.get(key)
        if hit is not None:
            return hit

        def call() -> list[dict[str, Any]]:
            models = self.api.list_models(search=search, author=author, filter=filter, sort="downloads", limit=limit)
            return [{"id": m.id, "downloads": m.downloads or 0, "tags": list(m.tags or [])} for m in models]

        try:
            result = await self._in_thread(self._retrying, call)
        except HfHubHTTPError as e:
            raise HubUnavailable(f"model search failed: {_short(e)}") from e
        self._searches.put(key, result)
        return result

    async def fetch(self, repo_id: str, revision: str | None = None, *, refresh: bool = False) -> RepoMetadata:
        """Metadata for a repo. Raises RepoInaccessible (gated / not found) or HubUnavailable."""
        payload = await self._payload(repo_id, revision, refresh)
        if "access" in payload:
            raise RepoInaccessible(payload["access"], payload.get("detail", ""))
        return RepoMetadata.from_json(payload)

    async def _payload(self, repo_id: str, revision: str | None, refresh: bool) -> dict[str, Any]:
        key = (repo_id, f"{revision or ''}#{self.identity}")  # who asked is part of the answer (gated repos)
        if not refresh:
            cached = self._memory.get(key)
            if cached is None and self.store is not None:
                cached = await self.store.cache_get(repo_id, key[1])
                if cached is not None:  # the memory cache judges its age: None when it is too old
                    self._memory.put(key, cached, stored_at=cached[1])
                    cached = self._memory.get(key)
            if cached is not None:
                return {**cached[0], "fetched_at": cached[1]}
        return await self._fetches.run(key, lambda: self._fetch_and_store(key, repo_id, revision))

    async def _fetch_and_store(self, key: tuple[str, str], repo_id: str, revision: str | None) -> dict[str, Any]:
        payload = await self._fetch_upstream(repo_id, revision)
        fetched_at = self.clock()
        if self.store is not None:
            await self.store.cache_put(repo_id, key[1], payload, fetched_at)
        self._memory.put(key, (payload, fetched_at), stored_at=fetched_at)
        return {**payload, "fetched_at": fetched_at}

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
        # A timeout of its own: huggingface_hub's client has none, and a stalled connection would hold this thread
        # (and one of the fetch slots) for good after the caller's deadline gave up on it.
        info = self._retrying(lambda: self.api.model_info(repo_id, revision=revision, files_metadata=True,
                                                          timeout=self.settings.timeout_seconds))
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
        sizes = {f.path: f.size for f in files}
        if "config.json" in sizes:
            if _too_big_to_read(sizes["config.json"]):
                meta.config_error = f"it is {human_bytes(sizes['config.json'])}, too big to be a model's config"
            else:
                try:
                    meta.config = json.loads(self._download(repo_id, "config.json", sha))
                    if not isinstance(meta.config, dict):
                        meta.config, meta.config_error = None, "it is not a JSON object"
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    meta.config_error = str(e)[:200]
        for name in SIDE_FILES:
            if name in sizes and not _too_big_to_read(sizes[name]):
                try:
                    data = json.loads(self._download(repo_id, name, sha))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a broken side file shows up later as a failing gate, not as an outage
                if isinstance(data, dict):
                    setattr(meta, name.removesuffix(".json"), data)
        # The headers of the weight shards: the dry load builds its placeholders from them, and the static
        # gates read quantization tensors from them. Ranged reads, never the weights.
        if meta.weight_files:
            meta.tensors = self._tensor_headers(repo_id, files, sha)
        return meta

    async def download_files(self, repo_id: str, revision: str | None, names: list[str]) -> dict[str, Path]:
        """Local paths of small repo files (tokenizer, templates) at a revision, through the download cache."""
        def fetch_all() -> dict[str, Path]:
            paths = {}
            for name in names:
                deadline = getattr(self._local, "deadline", None)
                if deadline is not None and time.monotonic() > deadline:
                    raise HubUnavailable("reading the repo's small files took longer than the deadline")
                paths[name] = self._download_path(repo_id, name, revision)
            return paths

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
                token=self.settings.token or False, cache_dir=self.settings.download_dir / self.identity,
                etag_timeout=self.settings.timeout_seconds,
            )
        )
        return Path(path)

    def _tensor_headers(self, repo_id: str, files: list[RepoFile], revision: str | None) -> dict[str, Tensor] | None:
        """Tensor names, dtypes and shapes from the headers of the root `model*.safetensors` files (the ones
        mlx-lm globs): a ranged read each, in parallel, nothing written to disk, never the weights."""
        names = [f.path for f in files if "/" not in f.path and fnmatch(f.path, MLX_WEIGHT_PATTERN)]
        if not names:
            return None
        deadline = getattr(self._local, "deadline", None)

        def header(filename: str):
            self._local.deadline = deadline
            return self._retrying(lambda: self.api.parse_safetensors_file_metadata(
                repo_id, filename, revision=revision, timeout=self.settings.timeout_seconds))

        try:
            parsed = parallel_map(header, names, workers=8)
        except (SafetensorsParsingError, EntryNotFoundError) as e:
            log.info("no readable safetensors headers for %s: %s", repo_id, e)
            return None
        return {name: Tensor(t.dtype, tuple(t.shape)) for meta in parsed for name, t in meta.tensors.items()}

    def _retrying(self, call: Callable[[], T]) -> T:
        """call(), retried on 429, 5xx and network errors with backoff, never past the operation's deadline. call
        must be a read (every caller's is: repo info, file downloads, safetensors headers, model search)."""
        deadline = getattr(self._local, "deadline", None)
        attempt = 0
        while True:
            try:
                return call()
            except LocalEntryNotFoundError as hidden:
                # hf_hub_download's "not in the local cache" hides why its HEAD failed (a 429, a 5xx, a dropped
                # connection): judge that, or a rate limit would read as a missing file.
                if not isinstance(hidden.__cause__, Exception):
                    raise HubUnavailable(f"Hugging Face could not be asked for a file ({_short(hidden)})") from hidden
                e = hidden.__cause__
            except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
                raise
            except Exception as caught:  # noqa: BLE001 - sorted below into retryable or not
                e = caught
            if not _retryable(e):
                if isinstance(e, HfHubHTTPError):
                    raise HubUnavailable(f"Hugging Face answered with an error: {_short(e)}") from e
                raise e
            attempt += 1
            hint = _retry_after(e)
            delay = min(MAX_BACKOFF_SECONDS, hint or self.settings.backoff_base_seconds * 2 ** (attempt - 1))
            delay *= 1 + random.random() * 0.2
            out_of_time = deadline is not None and time.monotonic() + delay >= deadline
            asked_to_wait_longer = hint is not None and hint > MAX_BACKOFF_SECONDS  # retrying sooner is futile
            if attempt > self.settings.max_retries or out_of_time or asked_to_wait_longer:
                if _status(e) == 429:
                    raise HubRateLimited(hint) from e
                raise HubUnavailable(f"could not reach Hugging Face ({_short(e)})") from e
            log.info("hub call failed (%s), retry %d in %.1fs", _short(e), attempt, delay)
            time.sleep(delay)


def _too_big_to_read(size: int | None) -> bool:
    return size is not None and size > JSON_FILE_LIMIT_BYTES


def _status(e: Exception) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _retryable(e: Exception) -> bool:
    if isinstance(e, HfHubHTTPError):
        return _status(e) in RETRY_STATUSES
    # huggingface_hub's HTTP client raises its transport's own errors (connect, read timeout, ...):
    # recognise them by class name rather than importing a transport the hub may swap out.
    names = {cls.__name__ for cls in type(e).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "ConnectionError", "TimeoutError"}) or isinstance(e, OSError)


def _retry_after(e: Exception) -> float | None:
    """The server's own wait hint: Retry-After (seconds), else the IETF RateLimit header's `t=` (Hugging Face
    sends `RateLimit: "api";r=0;t=55`)."""
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None) or {}
    for value in (headers.get("Retry-After"), _ratelimit_reset(headers.get("RateLimit"))):
        try:
            if value is not None and float(value) >= 0:
                return float(value)
        except ValueError:
            continue
    return None


def _ratelimit_reset(value: str | None) -> str | None:
    for part in (value or "").split(";"):
        key, _, number = part.strip().partition("=")
        if key == "t":
            return number
    return None


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} minutes"


def token_identity(token: str | None) -> str:
    """Who asks, for cache keys: "anonymous", or a short hash of the token (never the token itself)."""
    return "anonymous" if not token else "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]


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
