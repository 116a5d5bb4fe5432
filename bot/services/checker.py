"""One entry point for "can this repo run?": fetch metadata, decide, then suggest. Shared by the CLI and the bot."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.config import Config
from bot.core import dry_load, memory
from bot.core.capabilities import CapabilityTable
from bot.core.engine import EngineSettings, HostMemory, access_verdict, decide, reaches_a_load
from bot.core.metadata import RepoMetadata
from bot.core.repo_id import RepoRef
from bot.core.verdicts import Verdict
from bot.services.dry_load import DryLoadService, DryLoadSettings, DryLoadUnavailable
from bot.services.github import GitHubClient
from bot.services.host import host_memory
from bot.services.hub import HubService, HubSettings, RepoInaccessible
from bot.services.prober import ProberError, ProberSettings, shared_prober
from bot.services.store import Store
from bot.services.suggestions import SuggestionService

log = logging.getLogger(__name__)


@dataclass
class Checker:
    hub: HubService
    table: CapabilityTable
    host: HostMemory
    settings: EngineSettings
    suggestions: SuggestionService | None = None
    dry_load: DryLoadService | None = None  # None: the static gates alone

    async def check(self, ref: RepoRef, *, refresh: bool = False) -> Verdict:
        """The verdict for one repo, without suggestions. Raises HubUnavailable when Hugging Face cannot be reached."""
        try:
            meta = await self.hub.fetch(ref.repo_id, ref.revision, refresh=refresh)
        except RepoInaccessible as e:
            return access_verdict(ref.repo_id, ref.revision, e.verdict, e.detail, self.table.mlx_lm_version)
        verdict = decide(meta, self.table, self.host, self.settings)
        if self.dry_load is not None and reaches_a_load(meta):
            await self._ask_mlx_lm(meta, verdict)
        return verdict

    async def _ask_mlx_lm(self, meta: RepoMetadata, verdict: Verdict) -> None:
        """Replace the static verdict with the installed mlx-lm's own answer (and its exact memory)."""
        assert self.dry_load is not None
        try:
            outcome = await self.dry_load.outcome(meta)
        except DryLoadUnavailable as e:
            verdict.reasons.append(f"Note: mlx-lm's own dry load gave no answer ({e}); this is canrun's static check.")
            return
        static = verdict.verdict
        config = meta.config or {}
        if dry_load.apply(verdict, outcome, config, meta.hf_quant_config):
            log.warning("static gates said %s for %s@%s, mlx-lm %s's dry load says %s: %s", static, meta.repo_id,
                        meta.sha, outcome.mlx_lm_version, verdict.verdict, outcome.message or "loads")
        exact = dry_load.exact_memory(
            outcome, memory.kv_cache_bytes(config, self.settings.context_tokens), self.settings.context_tokens,
            self.host.budget_bytes, self.settings.fit_fraction,
        )
        if exact is not None:
            verdict.memory = exact

    async def warm_up(self) -> None:
        """Start the dry-load process now (mlx-lm's import takes seconds), so the first answer does not wait."""
        if self.dry_load is not None:
            try:
                await asyncio.to_thread(self.dry_load.prober.hello)
            except ProberError as e:
                log.warning("the dry-load process did not start: %s (answers use the static gates until it does)", e)

    async def add_suggestions(self, verdict: Verdict) -> Verdict:
        """Fill in what to do next. Never raises for a slow or failing source: it is named instead."""
        if self.suggestions is not None:
            result = await self.suggestions.suggest(verdict)
            verdict.suggestions, verdict.suggestions_unavailable = result.suggestions, result.unavailable
        return verdict

    async def close(self) -> None:
        self.hub.close()
        if self.suggestions is not None and self.suggestions.github is not None:
            await self.suggestions.github.close()


def hub_service(config: Config, store: Store | None) -> HubService:
    return HubService(
        HubSettings(
            endpoint=config.hf_endpoint,
            token=config.hf_token,
            cache_ttl_seconds=config.hub.cache_ttl_seconds,
            timeout_seconds=config.hub.request_timeout_seconds,
            max_retries=config.hub.max_retries,
            deadline_seconds=config.hub.deadline_seconds,
            download_dir=config.path(config.hub.download_dir),
        ),
        store,
    )


def dry_load_service(config: Config, hub: HubService, store: Store | None) -> DryLoadService | None:
    if not config.dry_load.enabled:
        return None
    prober = shared_prober(ProberSettings(
        timeout_seconds=config.dry_load.timeout_seconds,
        memory_ceiling_bytes=int(config.dry_load.memory_ceiling_gb * 1e9),
        max_requests=config.dry_load.max_requests,
    ))
    return DryLoadService(hub, prober, DryLoadSettings(work_dir=config.path(config.dry_load.work_dir)), store)


def make_checker(config: Config, store: Store | None, table: CapabilityTable) -> Checker:
    hub = hub_service(config, store)
    github = GitHubClient(config.github_api, token=config.github_token, store=store,
                          timeout=config.suggestions.timeout_seconds)
    return Checker(
        hub=hub,
        table=table,
        host=host_memory(config.memory.budget_gb),
        settings=EngineSettings(context_tokens=config.memory.context_tokens, fit_fraction=config.memory.fit_fraction),
        suggestions=SuggestionService(hub, github, mlx_lm_repo=config.suggestions.mlx_lm_repo,
                                      timeout=config.suggestions.timeout_seconds),
        dry_load=dry_load_service(config, hub, store),
    )
