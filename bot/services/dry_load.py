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
from bot.services.hub import HubUnavailable
from bot.services.memo import RecentCache, SingleFlight
from bot.services.placeholders import UnknownDtype, new_folder, remove_folder, remove_stale_folders, stage_model_folder
from bot.services.prober import Hello, Prober, ProberError

log = logging.getLogger(__name__)

# Small files only: a tokenizer.json is a few MB; anything bigger is not what load() needs besides weights.
SMALL_FILE_LIMIT_BYTES = 64 * 1024**2
# And not too many: a repo may carry hundreds of *.json or *.txt files (data, evaluations) that no load reads.
SMALL_FILES_MAX, SMALL_FILES_TOTAL_BYTES = 48, 256 * 1024**2
# Read first when a repo has too many: what config and tokenizer loading really open.
ESSENTIAL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "tokenizer.model", "chat_template.jinja", "chat_template.json",
                   "vocab.json", "merges.txt", "added_tokens.json", "hf_quant_config.json")
CONVERSIONS = ((8, 64), (4, 64))  # mlx_lm.convert's defaults: group size 64
CACHE_PREFIX = "dryload2:"  # 2: outcomes carry expert_bytes; older ones are asked again
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
        self._memory: RecentCache[str, DryLoadOutcome] = RecentCache(MEMORY_CACHE_ENTRIES)  # SQLite keeps them all
        # Waiters get the running call's error, but not its cancellation: that was its caller going away.
        self._runs: SingleFlight[str, DryLoadOutcome] = SingleFlight(
            lambda: DryLoadUnavailable("the dry load was interrupted"))
        self.runs = 0  # dry loads really run (not answered from the cache)
        # Folders left by a process that died mid-dry-load: their holes look like whole models to backups.
        remove_stale_folders(settings.work_dir)

    async def outcome(self, meta: RepoMetadata) -> DryLoadOutcome:
        """The installed mlx-lm's answer for this repo's metadata. Raises DryLoadUnavailable."""
        if not meta.tensors:
            raise DryLoadUnavailable("the safetensors headers could not be read")
        try:
            hello = await asyncio.to_thread(self.prober.hello)
        except ProberError as e:
            raise DryLoadUnavailable(str(e)) from e
        key = cache_key(meta, hello, self.hub.settings.token is not None)
        cached = await self._cached(key) if meta.sha else None  # no commit: the answer may change, ask again
        if cached is not None:
            return cached
        return await self._runs.run(key, lambda: self._run_and_remember(key, meta, hello))

    async def _run_and_remember(self, key: str, meta: RepoMetadata, hello: Hello) -> DryLoadOutcome:
        outcome = await self._run(meta, hello.allow_patterns, hello.mlx_lm_version, hello.mlx_version)
        if meta.sha:
            await self._remember(key, outcome)
        return outcome

    async def _run(self, meta: RepoMetadata, allow_patterns: list[str], mlx_lm_version: str,
                   mlx_version: str) -> DryLoadOutcome:
        names = small_files(meta, allow_patterns)
        try:
            local = await self.hub.download_files(meta.repo_id, meta.sha or meta.revision, names)
        except HubUnavailable as e:  # the static verdict stands; the next ask tries again
            raise DryLoadUnavailable(f"the repo's small files could not be read ({e})") from e
        folder = new_folder(self.settings.work_dir)
        started = time.perf_counter()
        try:
            await asyncio.to_thread(stage_model_folder, folder, local, {"model.safetensors": meta.tensors or {}})
            msg = await asyncio.to_thread(self.prober.request, {"path": str(folder), "conversions": CONVERSIONS})
        except UnknownDtype as e:
            raise DryLoadUnavailable(str(e)) from e
        except ProberError as e:
            log.warning("dry load of %s gave no answer: %s", meta.repo_id, e)
            raise DryLoadUnavailable(str(e)) from e
        finally:
            await asyncio.shield(asyncio.to_thread(remove_folder, folder))
        self.runs += 1
        log.info("dry load of %s@%s: %s in %.2f s", meta.repo_id, (meta.sha or "")[:8],
                 "loads" if msg.get("ok") else msg.get("error_type"), time.perf_counter() - started)
        if msg.get("message"):  # mlx-lm names the folder it loaded: name the repo instead
            msg["message"] = msg["message"].replace(str(folder), meta.repo_id)
        return DryLoadOutcome.from_child(msg, mlx_lm_version, mlx_version)

    async def _cached(self, key: str) -> DryLoadOutcome | None:
        hit = self._memory.get(key)
        if hit is None and self.store is not None:
            row = await self.store.http_cache_get(key)
            if row is not None:
                hit = DryLoadOutcome.from_json(row[0])
                self._memory.put(key, hit)
        return hit

    async def _remember(self, key: str, outcome: DryLoadOutcome) -> None:
        self._memory.put(key, outcome)
        if self.store is not None:
            await self.store.http_cache_put(key, outcome.to_json(), time.time())


def cache_key(meta: RepoMetadata, hello: Hello, with_token: bool) -> str:
    """Everything the answer depends on: the commit, the loading code (mlx-lm, mlx, the tokenizer libraries
    load_tokenizer runs, and every other installed package, which a model module or tokenizer may import) and
    whether a token could read the repo."""
    versions = f"mlx-lm {hello.mlx_lm_version}|mlx {hello.mlx_version}|{hello.tokenizer_libraries}|env {hello.environment}"
    return f"{CACHE_PREFIX}{meta.repo_id}@{meta.sha}|{versions}|token {int(with_token)}"


def small_files(meta: RepoMetadata, allow_patterns: list[str]) -> list[str]:
    """The root files mlx-lm would download besides the weights, minus code: config, tokenizer, templates. Raises
    DryLoadUnavailable when an essential one is over the size limit: left out, the load would fail for want of
    it, and no answer is better than a wrong one."""
    allow_patterns = allow_patterns or FALLBACK_PATTERNS
    candidates = []
    for f in meta.files:
        name = f.path
        if "/" in name or name.endswith(".py") or fnmatch(name, MLX_WEIGHT_PATTERN) or name.endswith(".safetensors"):
            continue
        if f.size is not None and f.size > SMALL_FILE_LIMIT_BYTES:
            if name in ESSENTIAL_FILES:
                raise DryLoadUnavailable(f"{name} is over the {SMALL_FILE_LIMIT_BYTES // 1024**2} MB a dry load "
                                         "reads of a small file")
            continue
        if any(fnmatch(name, p) for p in allow_patterns):
            candidates.append(f)
    candidates.sort(key=lambda f: (f.path not in ESSENTIAL_FILES, f.path))
    names, total = [], 0
    for f in candidates[:SMALL_FILES_MAX]:
        total += f.size or 0
        if total > SMALL_FILES_TOTAL_BYTES:
            break
        names.append(f.path)
    return sorted(names)
