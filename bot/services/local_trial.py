"""One trial load asked for on this host's own terminal (`canrun trial`): the bot's checks, model cache and worker,
without the Discord queue.

The same `[trials]` limits as the bot's apply (download size, memory share, free disk, phase timeouts), but not
`[trials] enabled`: that switch lets Discord members start downloads; the owner typing the command is consent.
It takes the host's one trial slot (trial_slot.py), so it waits while the bot, or another `canrun trial`, runs one.
The trial is not recorded in the `trials` table (it is outside the game: see the README);
a successful one is kept in `terminal_trials`, where the speed estimates calibrate on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import Config
from bot.core.trial_outcome import CANCELLED, FAILED, TrialOutcome
from bot.services.model_cache import ModelCacheFull
from bot.services.trial_runner import ProgressCallback, SpareWorker, TrialProcess, TrialSpec, start_trial
from bot.services.trial_settings import trial_limits
from bot.services.trial_slot import SlotAbandoned, trial_slot
from bot.services.trials import TrialAdmission


class LocalTrial:
    """A trial admitted by TrialAdmission (what the bot would refuse is refused there): waits for the host's trial
    slot, makes room in the model cache, runs the worker, tidies the cache."""

    def __init__(self, config: Config, admission: TrialAdmission, spare: SpareWorker | None = None):
        self.config = config
        self.admission = admission
        self.cache = admission.cache
        self.spare = spare  # a worker started ahead (start_spare), taken by the trial
        self._process: TrialProcess | None = None
        self._cancelled = asyncio.Event()

    def cancel(self) -> None:
        """Stop the trial, whenever: while it waits for the slot, before the worker starts (it then never does)
        or while it runs."""
        self._cancelled.set()
        if self._process is not None:
            self._process.cancel()

    async def run(self, repo_id: str, revision: str | None, prompt: str, max_tokens: int, weights_bytes: int,
                  on_progress: ProgressCallback, on_wait: Callable[[str], None] | None = None) -> TrialOutcome:
        """`on_wait(holder)`: called once if another trial holds the host's slot, before waiting for it."""
        try:
            async with trial_slot(self.cache.cache_dir, f"canrun trial {repo_id}", on_wait=on_wait,
                                  give_up=self._cancelled):
                return await self._run(repo_id, revision, prompt, max_tokens, weights_bytes, on_progress)
        except SlotAbandoned:
            return TrialOutcome(CANCELLED, None, None, 0.0, {})

    async def _run(self, repo_id: str, revision: str | None, prompt: str, max_tokens: int, weights_bytes: int,
                   on_progress: ProgressCallback) -> TrialOutcome:
        spec = TrialSpec(repo_id=repo_id, revision=revision, prompt=prompt, max_tokens=max_tokens,
                         endpoint=self.config.hf_endpoint, cache_dir=self.cache.cache_dir,
                         hf_token=self.config.hf_token)
        self._process = process = start_trial(spec, trial_limits(self.config), spare=self.spare)
        if self._cancelled.is_set():
            process.cancel()
        # A bot on this host shares the cache: leases keep each side from deleting what the other is using.
        try:
            lease = await self.admission.reserve(repo_id, weights_bytes)
        except ModelCacheFull as e:
            return TrialOutcome(FAILED, None, str(e), 0.0, {})
        try:
            return await process.run(on_progress)
        finally:  # as the bot does after a trial, cancelled ones included (their partial download goes too)
            await self.admission.release(repo_id, lease)


async def start_spare(config: Config) -> SpareWorker | None:
    """A worker started now, while the verdict is being checked: the trial then finds mlx-lm imported."""
    if not config.trials.warm_worker:
        return None
    spare = SpareWorker()
    await spare.prepare(TrialSpec.template(config.hf_endpoint, config.path(config.trials.cache_dir), config.hf_token))
    return spare
