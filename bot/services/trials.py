"""Trial admission, written once for every way a trial is asked for: /trial, a round's reveal and `canrun trial`.

The verdict, then the refusal (the verdict and the `[trials]` limits, free disk measured off the event loop), then
the bot's queue (TrialService) or a run in this terminal (local_trial.py); the model cache's lease around each
trial; after a bot trial, the speed comparison and the prediction game's settlement. Nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import NamedTuple
from collections.abc import Awaitable, Callable

from bot.config import Config
from bot.core.repo_id import RepoRef
from bot.core.trial_policy import GB, refusal
from bot.core.verdicts import Verdict
from bot.services import predictions as game
from bot.services.checker import Checker
from bot.services.game_events import GameEvents
from bot.services.hub import HubUnavailable
from bot.services.model_cache import Lease, ModelCache, ModelCacheFull
from bot.services.store import Store
from bot.services.trial_queue import QueueSettings, Trial, TrialAborted, TrialQueue, TrialRefused
from bot.services.trial_settings import trial_limits, trial_policy

log = logging.getLogger(__name__)
TRIALS_DISABLED = "Trials are not enabled on this bot ([trials] enabled in its config)."


class Admission(NamedTuple):
    verdict: Verdict
    refusal: str | None  # why no trial may run, in words for the user; None: it may


class TrialAdmission:
    """What every trial passes through, whoever asks: the verdict, the refusal, the model cache (built once)."""

    def __init__(self, config: Config, checker: Checker):
        self.config = config
        self.checker = checker
        self.policy = trial_policy(config, checker.host)
        self.cache = ModelCache(config.path(config.trials.cache_dir), int(config.trials.cache_budget_gb * GB),
                                min_free_bytes=self.policy.min_free_disk_bytes)

    async def refusal(self, verdict: Verdict) -> str | None:
        disk = await asyncio.to_thread(self.cache.available_bytes)  # walks the cache folder: not on the loop
        return refusal(verdict, self.policy, disk_available_bytes=disk)

    async def admit(self, ref: RepoRef) -> Admission:
        """The verdict and whether it allows a trial. Raises HubUnavailable."""
        verdict = await self.checker.check(ref)
        return Admission(verdict, await self.refusal(verdict))

    async def reserve(self, repo_id: str, weights_bytes: int) -> Lease:
        """Make room in the model cache and hold the model's place. Raises ModelCacheFull."""
        # A thread: the cache lock may wait on another process (a `canrun trial` beside the bot).
        return await asyncio.to_thread(self.cache.reserve, repo_id, weights_bytes)

    async def release(self, repo_id: str, lease: Lease | None) -> None:
        """After a trial, however it ended: drop the lease, delete the model unless [trials] keep_after_trial."""
        await asyncio.to_thread(self.cache.after_trial, repo_id, lease, keep=self.config.trials.keep_after_trial)


SettledListener = Callable[[Trial, game.Settlement], Awaitable[None]]


class TrialService:
    """The bot's trials: admission, then the queue. Present whether or not trials are enabled; when they are not,
    a request is refused with a sentence saying so."""

    def __init__(self, config: Config, store: Store, checker: Checker, game_events: GameEvents):
        self.config = config
        self.enabled = config.trials.enabled
        self.store = store
        self.checker = checker
        self.game_events = game_events
        self.admission = TrialAdmission(config, checker)
        self.settled_listeners: list[SettledListener] = []  # told what a trial's end settled (the Discord layer)
        self._leases: dict[int, Lease] = {}  # trial id -> its model's lease, from before_run to after_run
        cfg = config.trials
        self.queue = TrialQueue(
            store,
            QueueSettings(
                queue_max=cfg.queue_max, per_user_queued=cfg.per_user_queued,
                queued_ttl_seconds=cfg.queued_ttl_hours * 3600,
                limits=trial_limits(config),
                endpoint=config.hf_endpoint, hf_token=config.hf_token, cache_dir=self.admission.cache.cache_dir,
                warm_worker=cfg.warm_worker and self.enabled,
            ),
            before_run=self._before_trial, after_run=self._after_trial,
        )

    async def recover(self) -> None:
        """At start, before anyone listens: trials that died with the last run end."""
        if self.enabled:
            await self.queue.recover()

    def start(self) -> None:
        if self.enabled:
            self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    async def request(self, ref: RepoRef, *, requested_by: int, guild_id: int | None, channel_id: int | None,
                      prompt: str | None, max_tokens: int | None) -> Trial:
        """Queue a member's trial. Raises TrialRefused (a CanrunUserError) with the reason."""
        cfg = self.config.trials
        self.validate(max_tokens)
        try:
            admission = await self.admission.admit(ref)
        except HubUnavailable as e:
            raise TrialRefused("Hugging Face could not be reached; no trial queued.") from e
        if admission.refusal:
            raise TrialRefused(f"No trial for `{ref.repo_id}`: {admission.refusal.rstrip('.')}.")
        return await self.queue.enqueue(
            repo_id=ref.repo_id, revision=ref.revision, requested_by=requested_by, guild_id=guild_id,
            channel_id=channel_id, prompt=(prompt or cfg.default_prompt)[:1000],
            max_tokens=max_tokens or cfg.default_max_tokens, verdict=admission.verdict)

    def validate(self, max_tokens: int | None) -> None:
        """What can be refused before anything is looked up. Raises TrialRefused."""
        if not self.enabled:
            raise TrialRefused(TRIALS_DISABLED)
        if max_tokens is not None and max_tokens > self.config.trials.max_tokens_limit:
            raise TrialRefused(f"max_tokens can be at most {self.config.trials.max_tokens_limit} here.")

    async def for_reveal(self, repo_id: str, verdict: Verdict, *, since: float, requested_by: int,
                         guild_id: int | None, channel_id: int | None) -> tuple[int | None, str | None]:
        """A trial that settles a round's repo: one judged since `since`, one under way, or a new one.
        Else (None, why): the verdict settles it (why is None when trials are off)."""
        if not self.enabled:
            return None, None
        done = await self.queue.latest_judged(repo_id, since=since)
        if done is not None:
            return done.id, None
        running = await self.queue.in_flight(repo_id)
        if running is not None:
            return running.id, None
        why_not = await self.admission.refusal(verdict)
        if why_not:
            return None, why_not
        cfg = self.config.trials
        try:
            trial = await self.queue.enqueue(repo_id=repo_id, revision=None, requested_by=requested_by,
                                             guild_id=guild_id, channel_id=channel_id, prompt=cfg.default_prompt,
                                             max_tokens=cfg.default_max_tokens, verdict=verdict,
                                             per_user_limit=False)
        except TrialRefused as e:
            return None, str(e)
        return trial.id, None

    async def judged_since(self, repo_id: str, since: float) -> Trial | None:
        """The latest trial of the repo that told whether it loads, since `since` (None when trials are off)."""
        return await self.queue.latest_judged(repo_id, since=since) if self.enabled else None

    async def _before_trial(self, trial: Trial) -> None:
        try:
            meta = await self.checker.hub.fetch(trial.repo_id, trial.revision)
        except HubUnavailable as e:
            raise TrialAborted(f"Hugging Face could not be reached ({e})") from e
        try:
            lease = await self.admission.reserve(trial.repo_id, meta.weights_bytes or 0)
        except ModelCacheFull as e:
            raise TrialAborted(str(e)) from e
        self._leases[trial.id] = lease
        await self.game_events.trial_starting(trial)

    async def _after_trial(self, trial: Trial) -> None:
        try:
            try:  # the game first: the comparison is an extra
                settlement = await self.game_events.trial_ended(trial)
            except Exception:  # noqa: BLE001 - the repo stays locked: the next start settles it (GameEvents.recover)
                log.exception("settling the predictions on %s by trial #%s failed", trial.repo_id, trial.id)
                settlement = None
            await self._compare_speed(trial)
            if settlement is not None:
                for listener in self.settled_listeners:
                    await listener(trial, settlement)
        finally:
            await self.admission.release(trial.repo_id, self._leases.pop(trial.id, None))

    async def _compare_speed(self, trial: Trial) -> None:
        """Keep beside the trial's numbers what canrun predicted for it (shown with its result)."""
        if trial.status != "succeeded" or self.checker.speed is None:
            return
        try:
            compared = await self.checker.speed.trial_prediction(trial.repo_id, trial.revision, trial.result)
        except Exception:  # noqa: BLE001 - a comparison, never a reason to lose the trial's end
            log.exception("no speed comparison for trial #%s", trial.id)
            return
        if compared is not None:
            trial.result["speed_prediction"] = compared
            async with self.store.transaction() as db:
                await db.execute("UPDATE trials SET result = ? WHERE id = ?", (json.dumps(trial.result), trial.id))
