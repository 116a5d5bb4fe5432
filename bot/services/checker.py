"""The verdict for one repo: fetch metadata, decide (static gates, then the dry load), speed and fixes; suggestions
on request. Used by the answer service (answers.py) and trial admission (trials.py), so every frontend gets the same
verdict."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.config import Config
from bot.core import dry_load, fit, memory
from bot.core.capabilities import CapabilityTable
from bot.core.engine import EngineSettings, HostMemory, access_verdict, decide, reaches_a_load
from bot.core.metadata import RepoMetadata
from bot.core.repo_id import RepoRef
from bot.core.verdicts import LOADS, Verdict
from bot.services.dry_load import DryLoadService, DryLoadSettings, DryLoadUnavailable
from bot.services.github import GitHubClient
from bot.services.host import METAL_SOURCE, host_memory
from bot.services.host_speed import mac_facts
from bot.services.hub import HubService, HubSettings, RepoInaccessible
from bot.services.prober import ProberError, ProberSettings, shared_prober
from bot.services.speed import SpeedService, SpeedSettings, speed_inputs
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
    speed: SpeedService | None = None  # None: no speed estimates

    async def check(self, ref: RepoRef, *, refresh: bool = False) -> Verdict:
        """The verdict for one repo, without suggestions. Raises HubUnavailable when Hugging Face cannot be reached."""
        try:
            meta = await self.hub.fetch(ref.repo_id, ref.revision, refresh=refresh)
        except RepoInaccessible as e:
            return access_verdict(ref.repo_id, ref.revision, e.verdict, e.detail, self.table.mlx_lm_version)
        verdict = decide(meta, self.table, self.host, self.settings)
        outcome = None
        if self.dry_load is not None and reaches_a_load(meta):
            outcome = await self._ask_mlx_lm(meta, verdict)
        if verdict.verdict == LOADS and self.speed is not None:
            await self._estimate_speed(meta, verdict, outcome)
        if verdict.verdict == LOADS and "as_is" in verdict.memory and verdict.memory["as_is"].status != "fits":
            verdict.fixes = await self._fixes(meta, verdict, outcome)
        return verdict

    async def _fixes(self, meta: RepoMetadata, verdict: Verdict,
                     outcome: dry_load.DryLoadOutcome | None) -> list[dict]:
        """What makes a tight or too-large model fit, solved against the same need as its memory line."""
        config = meta.config or {}
        inputs = speed_inputs(config, verdict, outcome, self.settings.context_tokens)
        if inputs is None:
            return []
        if outcome is not None and outcome.ok and outcome.kv_layout:
            layout = outcome.kv_layout
        else:  # canrun's own estimate: every layer's K and V grow with the context
            layout = [{"per_token": memory.kv_cache_bytes(config, 1), "limit": None, "fixed": 0}]
        # Read each time: the owner may have changed iogpu.wired_limit_mb since the last answer.
        mac = None
        if self.host.source == METAL_SOURCE:
            mac = fit.MacLimits.from_sysctl(await asyncio.to_thread(mac_facts))
        weights = inputs.weights["as_is"]
        if outcome is None or not outcome.ok:  # the static need scales the files (fp8 dequantized doubles): undo it
            kv = dry_load.kv_cache_bytes(layout, self.settings.context_tokens)
            weights = int((verdict.memory["as_is"].need_bytes - kv - memory.WORKING_SPACE_BYTES)
                          / (1 + memory.WORKING_SPACE_FRACTION))
        return fit.fixes(repo=verdict.repo, weights=weights, layout=layout, context_tokens=self.settings.context_tokens,
                         budget=self.host.budget_bytes, fit_fraction=self.settings.fit_fraction,
                         conversions={k: v for k, v in inputs.weights.items() if k != "as_is"}, mac=mac)

    async def _estimate_speed(self, meta: RepoMetadata, verdict: Verdict,
                              outcome: dry_load.DryLoadOutcome | None) -> None:
        """Tokens/s on this host; an estimate is extra: its failure never costs the verdict."""
        assert self.speed is not None
        inputs = speed_inputs(meta.config or {}, verdict, outcome, self.settings.context_tokens)
        if inputs is None:
            return
        try:
            verdict.speed = await self.speed.report(inputs, repo=verdict.repo, revision=verdict.revision,
                                                    context_tokens=self.settings.context_tokens)
        except Exception:  # noqa: BLE001
            log.exception("no speed estimate for %s", verdict.repo)

    async def _ask_mlx_lm(self, meta: RepoMetadata, verdict: Verdict) -> dry_load.DryLoadOutcome | None:
        """Replace the static verdict with the installed mlx-lm's own answer (and its exact memory)."""
        assert self.dry_load is not None
        try:
            outcome = await self.dry_load.outcome(meta)
        except DryLoadUnavailable as e:
            verdict.reasons.append(f"Note: mlx-lm's own dry load gave no answer ({e}); this is canrun's static check.")
            return None
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
        return outcome

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
                                      timeout=config.suggestions.timeout_seconds,
                                      fit_fraction=config.memory.fit_fraction),
        dry_load=dry_load_service(config, hub, store),
        speed=SpeedService(store, SpeedSettings(prompt_tokens=config.speed.prompt_tokens))
        if config.speed.enabled else None,
    )
