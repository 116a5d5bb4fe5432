"""One answer to "can this repo run here?", for both frontends (the Discord /canrun and `canrun check`).

A recent answer is reused when the frontend allows it; otherwise the checker decides, suggestions are looked for,
and the answer is recorded (who saw it where) and told to the prediction game (it settles what it answers) before
anyone can see it. The frontends only format the result.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from collections.abc import Awaitable, Callable

from bot.config import Config
from bot.core.repo_id import RepoRef
from bot.core.verdicts import Verdict
from bot.services.capabilities import load_capability_table
from bot.services.checker import Checker, make_checker
from bot.services.game_events import GameEvents
from bot.services.store import Store

# Suggestions that arrive within this time go out with the verdict; later ones follow (on_preliminary).
SUGGESTION_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Audience:
    """Where an answer is shown: the history row's source and, in Discord, the server, channel and member."""

    source: str  # "discord" or "cli"
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None


@dataclass
class Answer:
    verdict: Verdict
    checked_at: float | None = None  # set when a recent answer was reused: when it was checked


class CanrunAnswers:
    def __init__(self, checker: Checker, store: Store, game_events: GameEvents, *, reuse_seconds: float):
        self.checker = checker
        self.store = store
        self.game_events = game_events
        self.reuse_seconds = reuse_seconds

    @classmethod
    async def open(cls, config: Config) -> CanrunAnswers:
        """For the terminal (`canrun check`, `canrun trial`): the store (migrated) and a checker, owned by this
        service and closed by close(). The bot builds its own in bot/services/container.py."""
        store = await Store.open_migrated(config.path(config.store.path))
        try:
            checker = make_checker(config, store, await load_capability_table(store))
        except BaseException:
            await store.close()
            raise
        return cls(checker, store, GameEvents(store), reuse_seconds=config.hub.cache_ttl_seconds)

    async def close(self) -> None:
        try:
            await self.checker.close()
        finally:
            await self.store.close()

    async def answer(self, ref: RepoRef, audience: Audience, *, refresh: bool = False, reuse_recent: bool = True,
                     on_preliminary: Callable[[Verdict], Awaitable[None]] | None = None) -> Answer:
        """The verdict with its suggestions, recorded. `on_preliminary(verdict)` is awaited with the verdict alone
        when suggestions take longer than SUGGESTION_GRACE_SECONDS. Raises HubUnavailable."""
        if reuse_recent and not refresh:
            recent = await self.store.recent_verdict(ref.repo_id, ref.revision, self.checker.table.mlx_lm_version,
                                                     since=time.time() - self.reuse_seconds)
            if recent is not None:
                verdict = Verdict.from_json(recent[0])
                await self.record(verdict, audience)  # who has seen which verdict matters to predictions
                return Answer(verdict, checked_at=recent[1])

        verdict = await self.checker.check(ref, refresh=refresh)
        suggestions = asyncio.create_task(self.checker.add_suggestions(verdict))
        done, _ = await asyncio.wait({suggestions}, timeout=SUGGESTION_GRACE_SECONDS)
        row = await self.record(verdict, audience)  # before anyone can see the answer
        if not done:
            if on_preliminary is not None:
                await on_preliminary(verdict)
            await suggestions
            await self.store.update_verdict_payload(row, verdict.to_json())
        return Answer(verdict)

    async def record(self, verdict: Verdict, audience: Audience) -> int:
        """Remember where and to whom the answer is shown (a later prediction is then a peek), and settle the
        predictions it answers. Returns the history row."""
        row = await self.store.record_verdict(verdict.to_json(), source=audience.source, guild_id=audience.guild_id,
                                              channel_id=audience.channel_id, user_id=audience.user_id)
        await self.game_events.verdict_shown(audience.guild_id, verdict)
        return row
