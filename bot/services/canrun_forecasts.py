"""canrun plays too: when a round opens, and when a /predict is placed outside rounds, canrun makes its own
forecast on the repo (core/canrun_forecast.py: its verdict, blended with how that verdict class fared against the
bot's stored trials) and the game keeps it hidden until the repo settles (services/predictions/forecasts.py).
"""

from __future__ import annotations

import logging

from bot.core.canrun_forecast import forecast, track_records
from bot.core.repo_id import parse_repo
from bot.services import predictions as game
from bot.services.canrun_record import judged_trials
from bot.services.checker import Checker
from bot.services.game_events import settles
from bot.services.hub import HubUnavailable
from bot.services.store import Store

log = logging.getLogger(__name__)


class CanrunForecasts:
    def __init__(self, store: Store, checker: Checker):
        self.store = store
        self.checker = checker

    async def for_round(self, rnd: game.Round) -> int:
        """canrun's forecast on each repo of a round just opened. Returns how many were made."""
        trials = await judged_trials(self.store)
        made = 0
        for repo in rnd.repos:
            made += await self._make(rnd.guild_id, repo.repo_id, rnd.id, trials)
        return made

    async def for_prediction(self, guild_id: int, repo_id: str) -> bool:
        """A /predict outside rounds: canrun's forecast in that group, unless it made one already."""
        if await game.has_forecast(self.store, guild_id, repo_id):
            return False
        return await self._make(guild_id, repo_id, None, await judged_trials(self.store))

    async def _make(self, guild_id: int, repo_id: str, round_id: int | None, trials) -> bool:
        try:
            verdict = await self.checker.check(parse_repo(repo_id))
        except HubUnavailable:  # no verdict, no forecast: the members' game goes on without canrun's row
            log.info("no forecast of canrun on %s: Hugging Face could not be reached", repo_id)
            return False
        if not settles(verdict):  # gated or missing: not a question about load()
            return False
        made = forecast(verdict.verdict, track_records(trials, leave_out_repo=repo_id))
        if made is None:
            return False
        fit = verdict.memory.get("as_is")
        return await game.record_forecast(self.store, guild_id=guild_id, repo_id=repo_id, round_id=round_id,
                                          forecast=made, fit=fit.status if fit else None)
