"""One trial load asked for on this Mac's own terminal (`canrun trial`): the bot's checks, model cache and worker,
without the Discord queue.

The same `[trials]` limits as the bot's apply (download size, memory share, free disk, phase timeouts), but not
`[trials] enabled`: that switch lets Discord members start downloads; the owner typing the command is consent.
The trial is not recorded in the `trials` table: see `canrun trial --help` and the README for why.
"""

from __future__ import annotations

import asyncio

from bot.config import Config
from bot.core.engine import HostMemory
from bot.core.trial_policy import GB, refusal
from bot.core.verdicts import Verdict
from bot.services.model_cache import ModelCache, ModelCacheFull
from bot.services.store import Store
from bot.services.trial_runner import FAILED, ProgressCallback, TrialOutcome, TrialProcess, TrialSpec, start_trial
from bot.services.trial_settings import trial_limits, trial_policy


async def running_bot_trials(store: Store) -> list[tuple[int, str]]:
    """(id, repo) of the trials the bot says it is running now; a bot that died mid-trial leaves one behind."""
    async with store.conn.execute("SELECT id, repo_id FROM trials WHERE status = 'running' ORDER BY id") as cur:
        return [(row[0], row[1]) for row in await cur.fetchall()]


class LocalTrial:
    """Refuses what the bot would refuse, makes room in the model cache, runs the worker, tidies the cache."""

    def __init__(self, config: Config, host: HostMemory):
        self.config = config
        self.policy = trial_policy(config, host)
        self.cache = ModelCache(config.path(config.trials.cache_dir), int(config.trials.cache_budget_gb * GB))
        self._process: TrialProcess | None = None
        self._cancelled = False

    def refusal(self, verdict: Verdict) -> str | None:
        return refusal(verdict, self.policy, disk_available_bytes=self.cache.available_bytes())

    def cancel(self) -> None:
        """Stop the trial, whenever: before the worker starts (it then never does) or while it runs."""
        self._cancelled = True
        if self._process is not None:
            self._process.cancel()

    async def run(self, repo_id: str, revision: str | None, prompt: str, max_tokens: int, weights_bytes: int,
                  on_progress: ProgressCallback) -> TrialOutcome:
        spec = TrialSpec(repo_id=repo_id, revision=revision, prompt=prompt, max_tokens=max_tokens,
                         endpoint=self.config.hf_endpoint, cache_dir=self.cache.cache_dir,
                         hf_token=self.config.hf_token)
        self._process = process = start_trial(spec, trial_limits(self.config))
        if self._cancelled:
            process.cancel()
        # A bot on this Mac shares the cache: leases keep each side from deleting what the other is using.
        try:
            lease = await asyncio.to_thread(self.cache.reserve, repo_id, weights_bytes)
        except ModelCacheFull as e:
            return TrialOutcome(FAILED, None, str(e), 0.0, {})
        try:
            return await process.run(on_progress)
        finally:  # as the bot does after a trial, cancelled ones included (their partial download goes too)
            await asyncio.to_thread(self.cache.after_trial, repo_id, lease, keep=self.config.trials.keep_after_trial)
