"""The command tree: every error becomes a log line with context and a short private answer.

discord.py's default on_error only logs, so the user would be left with "The application did not respond".
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.discord.reply import send_ephemeral

log = logging.getLogger("bot.discord")


class CanrunTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.CommandOnCooldown):
            text = f"Easy there: you can ask again in {max(1, round(error.retry_after))} s."
        elif isinstance(error, app_commands.CheckFailure):
            text = "That command is not for you (or not enabled here)."
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error(
                "command /%s failed (user %s, guild %s, channel %s, options %s)",
                command, interaction.user.id if interaction.user else None, interaction.guild_id,
                interaction.channel_id, (interaction.data or {}).get("options"),
                exc_info=getattr(error, "original", error),
            )
            text = "Something went wrong on canrun's side. It has been logged for the bot's owner."
        try:
            await _drop_thinking(interaction)
            await send_ephemeral(interaction, text)
        except discord.HTTPException:
            log.warning("could not tell the user about the error", exc_info=True)


async def _drop_thinking(interaction: discord.Interaction) -> None:
    """A command that deferred publicly and then failed would leave "canrun is thinking..." in the channel
    for good: delete that placeholder (only while it is one), the private answer says what happened."""
    if interaction.response.type != discord.InteractionResponseType.deferred_channel_message:
        return
    original = await interaction.original_response()
    if original.flags.loading:
        await interaction.delete_original_response()
