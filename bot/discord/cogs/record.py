"""/canrun-record: canrun's verdicts against the bot's trials, for everyone (canrun plays the game too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.record_render import record_embed
from bot.discord.reply import NO_MENTIONS
from bot.services.canrun_record import canrun_record

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot


class RecordCog(commands.Cog):
    def __init__(self, bot: CanrunBot):
        self.bot = bot

    @app_commands.command(name="canrun-record",
                          description="How often canrun's verdict matched a real trial, per mlx-lm version")
    async def record(self, interaction: discord.Interaction) -> None:
        rec = await canrun_record(self.bot.services.store)
        await interaction.response.send_message(embed=record_embed(rec, self.bot.config.hf_endpoint),
                                                allowed_mentions=NO_MENTIONS)


async def setup(bot: CanrunBot) -> None:
    await bot.add_cog(RecordCog(bot))
