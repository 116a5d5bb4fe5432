"""Owner-only maintenance commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.reply import send_ephemeral

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot


async def _is_owner(interaction: discord.Interaction) -> bool:
    return await interaction.client.is_owner(interaction.user)


class AdminCog(commands.Cog):
    def __init__(self, bot: CanrunBot):
        self.bot = bot

    @app_commands.command(name="canrun-sync", description="(bot owner) Register the slash commands with Discord again")
    @app_commands.default_permissions(administrator=True)
    @app_commands.check(_is_owner)
    async def sync(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.bot.sync_commands(force=True)
        await send_ephemeral(interaction, f"Synced {count} commands.")


async def setup(bot: CanrunBot) -> None:
    await bot.add_cog(AdminCog(bot))
