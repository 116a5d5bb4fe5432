"""Every service the bot uses, built once at start (CanrunBot.setup_hook), handed to the cogs, closed once.

Each is always present: with trials off, the trial service exists and refuses with a sentence saying so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.config import Config
from bot.services.answers import CanrunAnswers
from bot.services.canrun_forecasts import CanrunForecasts
from bot.services.capabilities import load_capability_table
from bot.services.checker import Checker, make_checker
from bot.services.game_events import GameEvents
from bot.services.model_search import ModelSearch
from bot.services.round_reveals import RoundReveals
from bot.services.store import Store
from bot.services.trials import TrialService

log = logging.getLogger(__name__)


@dataclass
class Services:
    config: Config
    store: Store
    checker: Checker
    answers: CanrunAnswers
    model_search: ModelSearch
    game_events: GameEvents
    trials: TrialService
    reveals: RoundReveals
    forecasts: CanrunForecasts
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    async def open(cls, config: Config) -> Services:
        """Open the store (migrated), load the mlx-lm table, build the services; trials that died with the last
        run end here, before anyone listens."""
        store = await Store.open_migrated(config.path(config.store.path))
        checker = None
        try:
            game_events = GameEvents(store)
            stale = await game_events.recover()  # no trial runs yet: these locks outlived a crash
            if stale:
                log.info("released repos locked by trials that died with the last run: %s", ", ".join(stale))
            checker = make_checker(config, store, await load_capability_table(store))
            trials = TrialService(config, store, checker, game_events)
            await trials.recover()
            return cls(
                config=config, store=store, checker=checker,
                answers=CanrunAnswers(checker, store, game_events, reuse_seconds=config.hub.cache_ttl_seconds),
                model_search=ModelSearch(checker.hub, timeout=config.discord.autocomplete_timeout_seconds),
                game_events=game_events, trials=trials, reveals=RoundReveals(config, store, checker, trials),
                forecasts=CanrunForecasts(store, checker),
            )
        except BaseException:
            try:
                if checker is not None:
                    await checker.close()  # the hub's threads, the GitHub session
            finally:
                await store.close()
            raise

    def start(self) -> None:
        """Background work: mlx-lm imported before the first /canrun, and the trial queue."""
        self._tasks.append(asyncio.create_task(self.checker.warm_up()))
        self.trials.start()

    async def close(self) -> None:
        """Each one closed even when one before it fails: the store last, as everything writes to it."""
        try:
            await self.reveals.stop()
        finally:
            try:
                await self.trials.stop()
            finally:
                try:
                    await self.checker.close()
                finally:
                    await self.store.close()
