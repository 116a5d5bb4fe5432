"""The dry load as a service: stage a repo's metadata as a model folder, ask the warm prober, cache the answer.

Only repos that got past the static gates that must never reach a load (access, config, weight files,
tokenizer code) come here. The outcome is cached by (repo, commit, mlx-lm version, mlx version, whether a
token was used): a commit never changes, and a new mlx or mlx-lm asks again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from bot.core.dry_load import DryLoadOutcome
from bot.core.metadata import MLX_WEIGHT_PATTERN, RepoMetadata
from bot.services.placeholders import UnknownDtype, remove_folder, stage_model_folder
from bot.services.prober import Prober, ProberError

log = logging.getLogger(__name__)

# Small files only: a tokenizer.json is a few MB; anything bigger is not what load() needs besides weights.
SMALL_FILE_LIMIT_BYTES = 64 * 1024**2
CONVERSIONS = ((8, 64), (4, 64))  # mlx_lm.convert's defaults: group size 64
CACHE_PREFIX = "dryload:"
MEMORY_CACHE_ENTRIES = 256
# What mlx-lm's download fetches besides weights, for versions that do not name DEFAULT_ALLOW_PATTERNS.
FALLBACK_PATTERNS = ["*.json", "tokenizer.model", "*.tiktoken", "tiktoken.model", "*.txt", "*.jsonl", "*.jinja"]


class DryLoadUnavailable(RuntimeError):
    """No dry-load answer (headers unreadable, prober timed out or crashed): the static verdict stands."""


@dataclass(frozen=True)
class DryLoadSettings:
    enabled: bool = True
    work_dir: Path = Path(".canrun/dryload")


class DryLoadService:
    def __init__(self, hub, prober: Prober, settings: DryLoadSettings, store=None):
        self.hub = hub  # bot.services.hub.HubService: downloads the small files
        self.prober = prober
        self.settings = settings
        self.store = store
        self._memory: dict[str, DryLoadOutcome] = {}
        self._inflight: dict[str, asyncio.Future[DryLoadOutcome]] = {}
        self.runs = 0  # dry loads really run (not answered from the cache)

    async def outcome(self, meta: RepoMetadata) -> DryLoadOutcome:
        """The installed mlx-lm's answer for this repo's metadata. Raises DryLoadUnavailable."""
        if not meta.tensors:
            raise DryLoadUnavailable("the safetensors headers could not be read")
        try:
            hello = await asyncio.to_thread(self.prober.hello)
        except ProberError as e:
            raise DryLoadUnavailable(str(e)) from e
        key = cache_key(meta, hello.mlx_lm_version, hello.mlx_version, self.hub.settings.token is not None)
        cached = await self._cached(key)
        if cached is not None:
            return cached
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[DryLoadOutcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._run(meta, hello.allow_patterns, hello.mlx_lm_version, hello.mlx_version)
            await self._remember(key, outcome)
            future.set_result(outcome)
            return outcome
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # nobody else may be waiting
            raise
        finally:
            del self._inflight[key]

    async def _run(self, meta: RepoMetadata, allow_patterns: list[str], mlx_lm_version: str,
                   mlx_version: str) -> DryLoadOutcome:
        names = small_files(meta, allow_patterns)
        local = await self.hub.download_files(meta.repo_id, meta.sha or meta.revision, names)
        try:
            folder = await asyncio.to_thread(
                stage_model_folder, self.settings.work_dir, local, {"model.safetensors": meta.tensors or {}}
            )
        except UnknownDtype as e:
            raise DryLoadUnavailable(str(e)) from e
        started = time.perf_counter()
        try:
            msg = await asyncio.to_thread(self.prober.request, {"path": str(folder.resolve()), "conversions": CONVERSIONS})
        except ProberError as e:
            log.warning("dry load of %s gave no answer: %s", meta.repo_id, e)
            raise DryLoadUnavailable(str(e)) from e
        finally:
            await asyncio.to_thread(remove_folder, folder)
        self.runs += 1
        log.info("dry load of %s@%s: %s in %.2f s", meta.repo_id, (meta.sha or "")[:8],
                 "loads" if msg.get("ok") else msg.get("error_type"), time.perf_counter() - started)
        if msg.get("message"):  # mlx-lm names the folder it loaded: name the repo instead
            msg["message"] = msg["message"].replace(str(folder.resolve()), meta.repo_id)
        return DryLoadOutcome.from_child(msg, mlx_lm_version, mlx_version)

    async def _cached(self, key: str) -> DryLoadOutcome | None:
        hit = self._memory.get(key)
        if hit is None and self.store is not None:
            row = await self.store.http_cache_get(key)
            if row is not None:
                hit = DryLoadOutcome.from_json(row[0])
                self._memory[key] = hit
        return hit

    async def _remember(self, key: str, outcome: DryLoadOutcome) -> None:
        if len(self._memory) >= MEMORY_CACHE_ENTRIES:
            self._memory.clear()  # cheap to refill from SQLite
        self._memory[key] = outcome
        if self.store is not None:
            await self.store.http_cache_put(key, outcome.to_json(), time.time())


def cache_key(meta: RepoMetadata, mlx_lm_version: str, mlx_version: str, with_token: bool) -> str:
    commit = meta.sha or f"rev:{meta.revision or ''}"
    return f"{CACHE_PREFIX}{meta.repo_id}@{commit}|mlx-lm {mlx_lm_version}|mlx {mlx_version}|token {int(with_token)}"


def small_files(meta: RepoMetadata, allow_patterns: list[str]) -> list[str]:
    """The root files mlx-lm would download besides the weights, minus code: config, tokenizer, templates."""
    allow_patterns = allow_patterns or FALLBACK_PATTERNS
    names = []
    for f in meta.files:
        name = f.path
        if "/" in name or name.endswith(".py") or fnmatch(name, MLX_WEIGHT_PATTERN) or name.endswith(".safetensors"):
            continue
        if f.size is not None and f.size > SMALL_FILE_LIMIT_BYTES:
            continue
        if any(fnmatch(name, p) for p in allow_patterns):
            names.append(name)
    return sorted(names)
