"""Revealing a prediction round: the plan (a trial or the static verdict for each repo), waiting for the trials,
settling, and resuming after a restart. The Discord layer only posts (RevealPoster).

A reveal is remembered in the store (REVEAL_PENDING + round id) from its start until its results are posted, so a
restart in between resumes it: trials that were queued are waited for again, results that could not be posted are
posted at the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Awaitable, Callable, Coroutine

from bot.config import Config
from bot.core.repo_id import parse_repo
from bot.core.verdicts import LOADS
from bot.services import predictions as game
from bot.services.checker import Checker
from bot.services.game_events import settles
from bot.services.hub import HubUnavailable
from bot.services.store import Store
from bot.services.trials import TrialService

log = logging.getLogger(__name__)
REVEAL_PENDING = "reveal_pending:"  # bot_state key prefix: + round id -> {"channel_id", "moderator_id"}


@dataclass
class RevealPlan:
    """How each live repo of a round is settled: a trial (its id) or the static verdict (its answer)."""

    trials: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, bool] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # neither possible (Hugging Face unreachable): the reveal waits
    no_trial: dict[str, str] = field(default_factory=dict)  # repo -> why the verdict settles it though trials are on
    voided: dict[str, str] = field(default_factory=dict)  # repo -> why it was taken out (its answer says nothing)
    answers: dict[str, bool] = field(default_factory=dict)  # repo -> the verdict's answer, also the fallback of a
    #                                                         trial that cannot tell


class RevealPoster(Protocol):
    """What a reveal needs said in a channel; implemented by the Discord layer."""

    async def say(self, channel_id: int | None, text: str) -> None: ...

    async def post_results(self, channel_id: int, results: game.RoundResults) -> bool:
        """True when posted; False leaves the reveal pending, so the next start posts the results."""


class RoundReveals:
    def __init__(self, config: Config, store: Store, checker: Checker, trials: TrialService):
        self.config = config
        self.store = store
        self.checker = checker
        self.trials = trials
        self.revealing: set[int] = set()  # rounds whose reveal is under way in this process
        self._tasks: set[asyncio.Task] = set()

    def under_way(self, round_id: int) -> bool:
        return round_id in self.revealing

    # ---- a moderator's /round reveal -----------------------------------------------------------

    async def claim(self, guild_id: int) -> game.Round:
        """The round in play here, now marked as being revealed. Raises game.Refused."""
        rnd = await game.current_round(self.store, guild_id)
        if rnd is None:
            raise game.Refused("No round is in play here.")
        if rnd.id in self.revealing:
            raise game.Refused(f"Round {rnd.id} is already being revealed.")
        self.revealing.add(rnd.id)
        return rnd

    async def plan(self, rnd: game.Round, *, channel_id: int | None, moderator_id: int) -> tuple[game.Round, RevealPlan]:
        """Close the claimed round, remember the reveal and plan it (trials are queued now)."""
        try:
            if rnd.status == "open":
                rnd = await game.close_round(self.store, rnd.id)
            # Remembered until the results are out, so a restart in between resumes the reveal.
            await self.store.state_put(f"{REVEAL_PENDING}{rnd.id}", json.dumps(
                {"channel_id": channel_id, "moderator_id": moderator_id}))
            return rnd, await self._plan(rnd, moderator_id)
        except BaseException:
            await self.done(rnd.id)  # the moderator hears of the failure and can reveal again
            raise

    async def carry_on(self, rnd: game.Round, plan: RevealPlan, channel_id: int | None, poster: RevealPoster) -> None:
        """Wait for the trials and post the results, in the background (trials outlast an interaction's token);
        a plan with unknown repos ends the reveal here, for a moderator to try again."""
        if plan.unknown:
            await self.done(rnd.id)
            return
        self.spawn(self._finish(rnd, plan, channel_id, poster))

    # ---- after a restart -----------------------------------------------------------------------

    def resume(self, poster: RevealPoster, ready: Callable[[], Awaitable[object]]) -> None:
        """Once `ready()` returns: finish each reveal that a restart interrupted, side by side."""
        self.spawn(self._resume_all(poster, ready))

    async def _resume_all(self, poster: RevealPoster, ready: Callable[[], Awaitable[object]]) -> None:
        await ready()
        for key, value in await self.store.state_items(REVEAL_PENDING):
            round_id = int(key.removeprefix(REVEAL_PENDING))
            if round_id not in self.revealing:
                self.revealing.add(round_id)  # at once: a /round reveal meanwhile says it is under way
                self.spawn(self._resume(round_id, json.loads(value), poster))

    async def _resume(self, round_id: int, pending: dict, poster: RevealPoster) -> None:
        channel = pending.get("channel_id")
        try:
            rnd = await game.get_round(self.store, round_id)
            if rnd is None:
                await self.done(round_id)
                return
            log.info("resuming the reveal of round %s after a restart", rnd.id)
            plan = RevealPlan()
            if rnd.status != "revealed":  # else only the results are still to be posted
                plan = await self._plan(rnd, pending["moderator_id"])
            if plan.unknown:
                await poster.say(channel, f"Round {rnd.id} could not be revealed after a restart: Hugging Face "
                                          "could not be reached. A moderator can run `/round reveal` again.")
                await self.done(rnd.id)
                return
        except asyncio.CancelledError:
            self.revealing.discard(round_id)
            raise
        except Exception:  # one broken reveal must not keep the others from finishing
            log.exception("resuming the reveal of round %s failed", round_id)
            await poster.say(channel, f"Revealing round {round_id} failed; a moderator can try `/round reveal` again.")
            await self.done(round_id)
            return
        await self._finish(rnd, plan, channel, poster)

    # ---- the engine ----------------------------------------------------------------------------

    async def _plan(self, rnd: game.Round, moderator_id: int) -> RevealPlan:
        plan = RevealPlan()
        by_trial = self.config.predictions.round_reveal_by_trial
        for repo in rnd.repos:
            if repo.void_reason is not None:
                continue
            try:
                verdict = await self.checker.check(parse_repo(repo.repo_id))
            except HubUnavailable:
                plan.unknown.append(repo.repo_id)
                continue
            if not settles(verdict):  # gated or gone since the round opened: nobody can be right or wrong
                why = f"Hugging Face now says {verdict.verdict}, so load() cannot be judged"
                await game.void_round_repo(self.store, rnd.id, repo.repo_id, reason=why, voided_by=moderator_id)
                plan.voided[repo.repo_id] = why
                continue
            plan.answers[repo.repo_id] = verdict.verdict == LOADS
            trial_id, why_not = await self.trials.for_reveal(  # a trial since the round opened is the truth already
                repo.repo_id, verdict, since=rnd.opened_at, requested_by=moderator_id,
                guild_id=rnd.guild_id, channel_id=rnd.channel_id) if by_trial else (None, None)
            if trial_id is not None:
                plan.trials[repo.repo_id] = trial_id
            else:
                plan.verdicts[repo.repo_id] = verdict.verdict == LOADS
                if why_not:
                    plan.no_trial[repo.repo_id] = why_not
        return plan

    async def _finish(self, rnd: game.Round, plan: RevealPlan, channel_id: int | None, poster: RevealPoster) -> None:
        try:
            outcomes: dict[str, tuple[bool, game.Source]] = {r: (loads, "verdict") for r, loads in plan.verdicts.items()}
            for repo_id, trial_id in plan.trials.items():
                trial = await self.trials.queue.wait_finished(trial_id)
                if trial.loaded is not None:
                    outcomes[repo_id] = (trial.loaded, "trial")
                else:  # cancelled, timed out, failed before load(): the trial could not tell
                    outcomes[repo_id] = (plan.answers[repo_id], "verdict")
            for repo_id, (_, source) in list(outcomes.items()):
                # A trial of a verdict-settled repo may have ended since the round opened (while it was open, or
                # while other trials ran): the truth wins over the verdict.
                judged = await self.trials.judged_since(repo_id, rnd.opened_at) if source == "verdict" else None
                if judged is not None:
                    outcomes[repo_id] = (judged.loaded, "trial")
            # A moderator may have voided a repo while its trial ran.
            current = await game.get_round(self.store, rnd.id)
            live = {r.repo_id for r in current.repos if r.void_reason is None}
            results = await game.reveal_round(self.store, rnd.id, {r: o for r, o in outcomes.items() if r in live})
        except asyncio.CancelledError:  # the bot is closing: the reveal resumes at the next start
            self.revealing.discard(rnd.id)
            raise
        except Exception:
            log.exception("revealing round %s failed", rnd.id)
            await poster.say(channel_id, f"Revealing round {rnd.id} failed; a moderator can try `/round reveal` again.")
            await self.done(rnd.id)
            return
        if channel_id is not None and not await poster.post_results(channel_id, results):
            log.warning("could not post the results of round %s; posting them at the next start", rnd.id)
            self.revealing.discard(rnd.id)  # settled; only the post is missing: kept, so the next start posts it
            return
        await self.done(rnd.id)

    async def done(self, round_id: int) -> None:
        self.revealing.discard(round_id)
        await self.store.state_delete(f"{REVEAL_PENDING}{round_id}")

    # ---- tasks ---------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel what runs in the background (the reveals resume at the next start)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
