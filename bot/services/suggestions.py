"""Suggestions: fetch what a learner can do next, without ever holding up the verdict.

Each source (Hugging Face search, GitHub) runs concurrently under its own timeout; a source that is
slow, rate limited or down is named in `unavailable` and the rest is returned.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.core import suggest
from bot.core.verdicts import Suggestion, Verdict
from bot.services.github import GitHubClient, GitHubUnavailable
from bot.services.hub import HubService, HubUnavailable, RepoInaccessible

log = logging.getLogger(__name__)
SIZED_CONVERSIONS = 5  # conversions whose size is read to say whether they fit: the most downloaded ones


@dataclass
class SuggestionResult:
    suggestions: list[Suggestion] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # sources that did not answer: "Hugging Face", "GitHub"


class SuggestionService:
    def __init__(self, hub: HubService, github: GitHubClient | None, *, mlx_lm_repo: str = "ml-explore/mlx-lm",
                 timeout: float = 5.0, fit_fraction: float = 0.75):
        self.hub = hub
        self.fit_fraction = fit_fraction  # [memory] fit_fraction: a conversion "fits" as a verdict would
        self.github = github
        self.mlx_lm_repo = mlx_lm_repo
        self.timeout = timeout
        self.hub_url = hub.settings.endpoint.rstrip("/")  # links point at the hub that answered: [hub] endpoint

    async def suggest(self, v: Verdict) -> SuggestionResult:
        result = SuggestionResult()
        jobs: list[tuple[str, asyncio.Future]] = []
        if suggest.wants_github(v) and self.github is not None:
            jobs.append(("GitHub", asyncio.ensure_future(self._upgrade(v))))
            jobs.append(("GitHub", asyncio.ensure_future(self._pull_requests(v))))
        if suggest.wants_conversions(v) or suggest.wants_base_model(v):
            jobs.append(("Hugging Face", asyncio.ensure_future(self._from_hub(v))))
        for source, job in jobs:
            try:
                result.suggestions.extend(await asyncio.wait_for(job, self.timeout))
            except (TimeoutError, GitHubUnavailable, HubUnavailable) as e:
                log.info("suggestions from %s unavailable for %s: %s", source, v.repo, e)
                if source not in result.unavailable:
                    result.unavailable.append(source)
        return result

    async def _upgrade(self, v: Verdict) -> list[Suggestion]:
        """An upgrade, when mlx-lm upstream supports the model_type: a module file or a MODEL_REMAPPING entry."""
        if not suggest.SAFE_MODEL_TYPE.match(v.model_type or ""):
            return []  # it names a path on GitHub: only a plain identifier
        if not await self._supported_upstream(v.model_type, ref=None):
            return []
        release = await self.github.latest_release(self.mlx_lm_repo)
        in_release = release is not None and await self._supported_upstream(v.model_type, ref=release)
        return [suggest.upgrade_suggestion(v.model_type, v.mlx_lm_version or "?", release if in_release else None,
                                           self.mlx_lm_repo)]

    async def _supported_upstream(self, model_type: str, ref: str | None) -> bool:
        if await self.github.file_exists(self.mlx_lm_repo, f"mlx_lm/models/{model_type}.py", ref=ref):
            return True
        source = await self.github.file_text(self.mlx_lm_repo, "mlx_lm/utils.py", ref=ref)
        target = suggest.remapping_in_source(source or "").get(model_type)
        return bool(target) and suggest.SAFE_MODEL_TYPE.match(target) is not None and await self.github.file_exists(
            self.mlx_lm_repo, f"mlx_lm/models/{target}.py", ref=ref)

    async def _pull_requests(self, v: Verdict) -> list[Suggestion]:
        items = await self.github.search_issues(self.mlx_lm_repo, v.model_type)
        # Pull requests first: they are closer to landing than issues.
        items.sort(key=lambda i: 0 if "pull_request" in i else 1)
        return suggest.github_suggestions(items)

    async def _from_hub(self, v: Verdict) -> list[Suggestion]:
        base_models: list[str] = []
        try:
            meta = await self.hub.fetch(v.repo, v.revision)
            base_models = meta.base_models
        except RepoInaccessible:
            pass
        out: list[Suggestion] = []
        if suggest.wants_conversions(v) or base_models:
            out.extend(await self._conversions(v, base_models))
        if suggest.wants_base_model(v) and base_models:
            out.extend(await self._base_model(base_models[0]))
        return out

    async def _conversions(self, v: Verdict, base_models: list[str]) -> list[Suggestion]:
        # The hub tags derived repos `base_model:<id>`: exact matches first, then a search by name.
        candidates = []
        for source in [v.repo, *base_models]:
            candidates += await self.hub.list_models(author=suggest.MLX_COMMUNITY, filter=f"base_model:{source}")
        if not candidates:
            candidates = await self.hub.list_models(author=suggest.MLX_COMMUNITY, search=suggest.name_query(v.repo))
        prefer_small = v.verdict == "loads"
        fits = await self._conversion_fits(v, candidates) if suggest.size_matters(v) else None
        return suggest.rank_conversions(candidates, prefer_small=prefer_small, hub_url=self.hub_url, fits=fits)

    async def _conversion_fits(self, v: Verdict, candidates: list[dict]) -> dict:
        """The fit here of the most downloaded conversions, from their weights' sizes on the hub (one metadata
        read each, concurrently and cached; a repo that does not answer is left unsized)."""
        repos = list(dict.fromkeys(m["id"] for m in sorted(candidates, key=lambda m: -int(m.get("downloads") or 0))
                                   if m["id"].startswith(suggest.MLX_COMMUNITY + "/")))[:SIZED_CONVERSIONS]

        async def size(repo: str) -> int | None:
            try:
                return (await self.hub.fetch(repo)).weights_bytes
            except (RepoInaccessible, HubUnavailable):
                return None

        # Half the suggestions' time at most: the conversions themselves matter more than their sizes. A read
        # still running then is left to finish (it fills the cache for the next ask) and its repo goes unsized;
        # cancelling it would fail others waiting on the same read.
        jobs = {repo: asyncio.ensure_future(size(repo)) for repo in repos}
        if jobs:
            await asyncio.wait(jobs.values(), timeout=self.timeout / 2)
        sizes = {repo: job.result() for repo, job in jobs.items() if job.done() and not job.exception() and job.result()}
        return suggest.conversion_fits(sizes, as_is=v.memory["as_is"], as_is_weights=v.weights_bytes,
                                       fit_fraction=self.fit_fraction)

    async def _base_model(self, base: str) -> list[Suggestion]:
        out = [Suggestion("base_model", f"Original model: {base}", f"{self.hub_url}/{base}")]
        try:
            base_meta = await self.hub.fetch(base)
        except RepoInaccessible:
            return out
        if base_meta.weight_files:
            out.append(suggest.convert_suggestion(base, self.hub_url))
        return out
