"""/canrun: the verdict for a Hugging Face repo, with what to do next."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.repo_id import RepoIdError, RepoRef, parse_repo
from bot.core.verdicts import Verdict
from bot.discord import safe
from bot.discord.render import verdict_embed, verdict_view
from bot.discord.reply import Reply, send_ephemeral
from bot.services.host import machine_name
from bot.services.hub import HubUnavailable

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot

log = logging.getLogger(__name__)
# Suggestions that arrive within this time go out with the verdict, in one edit; later ones follow.
SUGGESTION_GRACE_SECONDS = 1.0


def _cooldown(interaction: discord.Interaction) -> app_commands.Cooldown | None:
    per = interaction.client.config.discord.canrun_cooldown_seconds
    return app_commands.Cooldown(1, per) if per > 0 else None


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    return "just now" if minutes < 1 else f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


class CanrunCog(commands.Cog):
    def __init__(self, bot: CanrunBot):
        self.bot = bot

    @app_commands.command(name="canrun", description=f"Will this Hugging Face model load in mlx-lm on {machine_name()}?")
    @app_commands.describe(
        repo="Model id like mlx-community/Qwen3-0.6B-4bit, or a huggingface.co link",
        revision="Branch, tag or commit (default: the main branch)",
        refresh="Check again even if someone asked recently",
    )
    @app_commands.checks.dynamic_cooldown(_cooldown)
    async def canrun(self, interaction: discord.Interaction, repo: str, revision: str | None = None,
                     refresh: bool = False) -> None:
        try:
            ref = parse_repo(repo, revision)
        except RepoIdError as e:
            await send_ephemeral(interaction, f"{e}\nYou typed: `{safe.clip(repo.replace('`', ''), 100)}`")
            return
        await interaction.response.defer(thinking=True)
        reply = Reply(interaction)
        await self.answer(interaction, reply, ref, refresh=refresh)

    async def answer(self, interaction: discord.Interaction, reply: Reply, ref: RepoRef, *, refresh: bool) -> None:
        bot, checker = self.bot, self.bot.checker
        hub_url = bot.config.hf_endpoint

        recent = None if refresh else await bot.store.recent_verdict(
            ref.repo_id, ref.revision, checker.table.mlx_lm_version,
            since=time.time() - bot.config.hub.cache_ttl_seconds,
        )
        if recent is not None:
            verdict = Verdict.from_json(recent[0])
            note = f"checked {_ago(time.time() - recent[1])}, cached · refresh:true checks again"
            await self._record(interaction, verdict)  # who has seen which verdict matters to predictions
            await reply.edit(embed=verdict_embed(verdict, checker.host, hub_url=hub_url, cached_note=note),
                             view=verdict_view(verdict, hub_url=hub_url))
            return

        try:
            verdict = await checker.check(ref, refresh=refresh)
        except HubUnavailable as e:
            log.warning("/canrun %s: %s", ref, e)
            await reply.edit(content="Hugging Face could not be reached just now, so there is no verdict. "
                                     "Try again in a minute.")
            return

        suggestions = asyncio.create_task(checker.add_suggestions(verdict))
        done, _ = await asyncio.wait({suggestions}, timeout=SUGGESTION_GRACE_SECONDS)
        row = await self._record(interaction, verdict)  # before anyone can see the answer
        if not done:
            await reply.edit(embed=verdict_embed(verdict, checker.host, hub_url=hub_url, suggestions_pending=True),
                             view=verdict_view(verdict, hub_url=hub_url))
        await suggestions
        await bot.store.update_verdict_payload(row, verdict.to_json())
        await reply.edit(embed=verdict_embed(verdict, checker.host, hub_url=hub_url),
                         view=verdict_view(verdict, hub_url=hub_url))

    async def _record(self, interaction: discord.Interaction, verdict: Verdict) -> int:
        """Remember where and to whom the answer is shown (a later prediction is then a peek), and settle the
        predictions it answers. Returns the history row."""
        row = await self.bot.store.record_verdict(
            verdict.to_json(), source="discord", guild_id=interaction.guild_id,
            channel_id=interaction.channel_id, user_id=interaction.user.id,
        )
        await self.bot.game_events.verdict_shown(interaction.guild_id, verdict)
        return row

    @canrun.autocomplete("repo")
    async def repo_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await repo_choices(self.bot, current)


async def repo_choices(bot: CanrunBot, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete of a `repo` option: Hugging Face model ids matching what was typed, within Discord's limits."""
    ids = await bot.model_search.complete(current)
    return [app_commands.Choice(name=safe.clip(i, safe.CHOICE_NAME), value=i) for i in ids
            if len(i) <= safe.CHOICE_VALUE][: safe.CHOICES]
