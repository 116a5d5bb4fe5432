"""What happens elsewhere in the bot, told to the prediction game: verdicts shown, trials starting and ending,
and what a member could have seen before predicting.

Predictions are about a repo's default branch (`main` on Hugging Face), so only answers about it settle them: a
verdict or a trial of another revision, or a gated / missing repo (whose answer says nothing about load()),
settles nothing. Any trial of a repo still locks it while it runs and counts as seen once it ends: watching a
trial of another branch is close enough to peeking.
"""

from __future__ import annotations

import logging

from bot.core.repo_id import is_default_branch
from bot.core.verdicts import GATED, LOADS, NOT_FOUND, Verdict
from bot.services import predictions as game
from bot.services.canrun_record import log_if_missed
from bot.services.store import Store
from bot.services.trial_queue import Trial, first_judged_at, latest_judged

log = logging.getLogger(__name__)
NO_ANSWER = (GATED, NOT_FOUND)


def settles(verdict: Verdict) -> bool:
    """Whether this verdict answers "does the repo's default branch load?"."""
    return is_default_branch(verdict.revision) and verdict.verdict not in NO_ANSWER


class GameEvents:
    def __init__(self, store: Store):
        self.store = store

    async def verdict_shown(self, guild_id: int | None, verdict: Verdict) -> game.Settlement | None:
        """A /canrun answer was posted in a server: it settles the open predictions there (a trial may later
        overrule it)."""
        if guild_id is None or not settles(verdict):
            return None
        return await game.settle_repo(self.store, guild_id, verdict.repo, verdict.verdict == LOADS, "verdict")

    async def trial_starting(self, trial: Trial) -> None:
        """Nobody may predict while the answer is being found."""
        await game.lock_repo(self.store, trial.repo_id)

    async def trial_ended(self, trial: Trial) -> game.Settlement | None:
        """The ground truth, when the trial could tell: it settles predictions in every guild, and scores canrun's
        own verdict (a miss is logged for the owner, whatever the revision). Then unlock. A settlement that fails
        leaves the repo locked: the next start applies the trial then (recover), rather than letting a later
        verdict score what the trial answered."""
        log_if_missed(trial)
        if trial.loaded is not None and is_default_branch(trial.revision):
            settlement = await game.settle_repo(self.store, None, trial.repo_id, trial.loaded, "trial")
        else:
            settlement = None
        await game.unlock_repo(self.store, trial.repo_id)
        return settlement

    async def recover(self) -> list[str]:
        """At start, before any trial runs: a repo still locked was left by a process that died during a trial, or
        by a trial whose settlement failed. When that trial's end was recorded, its result is applied now, as of
        when it ended: the ground truth is not dropped, and a later verdict cannot score what the trial answered.
        Then the repo is unlocked. Returns the repos. A repo that fails is logged and unlocked all the same: the
        bot must start."""
        repos = []
        for repo_id, locked_at in await game.repo_locks(self.store):
            try:
                trial = await latest_judged(self.store, repo_id, since=locked_at)
                if trial is not None:
                    await game.settle_repo(self.store, None, repo_id, bool(trial.loaded), "trial",
                                           at=trial.finished_at)
            except Exception:  # noqa: BLE001 - one repo's settlement must not keep the bot from starting
                log.exception("could not settle %s by its last trial; its predictions reopen", repo_id)
            await game.unlock_repo(self.store, repo_id)
            repos.append(repo_id)
        return repos

    def seen_in(self, guild_id: int) -> game.SeenCallable:
        """For peeking, besides a member's own /canrun answers: what was posted in public, in this guild (any
        member's /canrun, a revealed round) or anywhere (a trial's result)."""

        async def seen(user_id: int, repo_id: str) -> float | None:
            times = (await game.shown_in_guild_at(self.store, guild_id, repo_id),
                     await first_judged_at(self.store, repo_id))
            return min((t for t in times if t is not None), default=None)

        return seen
