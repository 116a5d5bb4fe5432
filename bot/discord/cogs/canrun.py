"""/canrun: the verdict for a Hugging Face repo, with what to do next. The answer is the service's
(bot/services/answers.py); this cog only shows it."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.repo_id import RepoRef, parse_repo
from bot.core.verdicts import Verdict
from bot.discord.render import verdict_embed, verdict_view
from bot.discord.reply import Reply
from bot.discord.repo_option import SearchedRepo
from bot.services.answers import Audience
from bot.services.host import machine_name
from bot.services.hub import HubUnavailable

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot

log = logging.getLogger(__name__)


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
    async def canrun(self, interaction: discord.Interaction, repo: app_commands.Transform[RepoRef, SearchedRepo],
                     revision: str | None = None, refresh: bool = False) -> None:
        if revision:  # given apart, it wins over one in a pasted link
            repo = parse_repo(repo.repo_id, revision)
        await interaction.response.defer(thinking=True)
        reply = Reply(interaction)
        hub_url = self.bot.config.hf_endpoint
        host = self.bot.services.checker.host

        async def show(verdict: Verdict, **notes) -> None:
            await reply.edit(embed=verdict_embed(verdict, host, hub_url=hub_url, **notes),
                             view=verdict_view(verdict, hub_url=hub_url))

        audience = Audience("discord", interaction.guild_id, interaction.channel_id, interaction.user.id)
        try:
            answer = await self.bot.services.answers.answer(
                repo, audience, refresh=refresh, on_preliminary=lambda v: show(v, suggestions_pending=True))
        except HubUnavailable as e:
            log.warning("/canrun %s: %s", repo, e)
            await reply.edit(content="Hugging Face could not be reached just now, so there is no verdict. "
                                     "Try again in a minute.")
            return
        note = None
        if answer.checked_at is not None:
            note = f"checked {_ago(time.time() - answer.checked_at)}, cached · refresh:true checks again"
        await show(answer.verdict, cached_note=note)


async def setup(bot: CanrunBot) -> None:
    await bot.add_cog(CanrunCog(bot))
