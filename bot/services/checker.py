"""One entry point for "can this repo run?": fetch metadata, decide, then suggest. Shared by the CLI and the bot."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Config
from bot.core.capabilities import CapabilityTable
from bot.core.engine import EngineSettings, HostMemory, access_verdict, decide
from bot.core.repo_id import RepoRef
from bot.core.verdicts import Verdict
from bot.services.github import GitHubClient
from bot.services.host import host_memory
from bot.services.hub import HubService, HubSettings, RepoInaccessible
from bot.services.store import Store
from bot.services.suggestions import SuggestionService


@dataclass
class Checker:
    hub: HubService
    table: CapabilityTable
    host: HostMemory
    settings: EngineSettings
    suggestions: SuggestionService | None = None

    async def check(self, ref: RepoRef, *, refresh: bool = False) -> Verdict:
        """The verdict for one repo, without suggestions. Raises HubUnavailable when Hugging Face cannot be reached."""
        try:
            meta = await self.hub.fetch(ref.repo_id, ref.revision, refresh=refresh)
        except RepoInaccessible as e:
            return access_verdict(ref.repo_id, ref.revision, e.verdict, e.detail, self.table.mlx_lm_version)
        return decide(meta, self.table, self.host, self.settings)

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
            download_dir=config.path(config.hub.download_dir),
        ),
        store,
    )


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
    )
