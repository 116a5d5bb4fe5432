"""The command tree: every error of a command is answered here, in one place.

A CanrunUserError (bad input, a refused request) gets its sentence, privately: ephemeral, escaped, no mentions;
except after a public "thinking..." deferral, whose placeholder then becomes the sentence, as the command's own
answer would have. Anything else becomes a log line with context and a short private apology: discord.py's default
on_error only logs, so the user would be left with "The application did not respond".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot.core.errors import CanrunUserError
from bot.discord import safe
from bot.discord.reply import NO_MENTIONS, send_ephemeral

log = logging.getLogger("bot.discord")
APOLOGY = "Something went wrong on canrun's side. It has been logged for the bot's owner."
Callback = Callable[[Any, discord.Interaction], Awaitable[None]]


def answers_its_errors(callback: Callback) -> Callback:
    """For a button's or select's callback: its errors never reach the tree (discord.py only logs them, and the
    member sees "This interaction failed"), so they are logged with context and answered privately here."""

    @functools.wraps(callback)
    async def guarded(item: Any, interaction: discord.Interaction) -> None:
        try:
            await callback(item, interaction)
        except Exception:
            log.exception("component %s failed (user %s, guild %s, channel %s)", getattr(item, "custom_id", item),
                          interaction.user.id if interaction.user else None, interaction.guild_id,
                          interaction.channel_id)
            try:
                await send_ephemeral(interaction, APOLOGY)
            except discord.HTTPException:
                log.warning("could not tell the user about the error", exc_info=True)

    return guarded


def user_error(error: BaseException) -> CanrunUserError | None:
    """The CanrunUserError behind an app command error: raised by the command, or by a transformer (RepoRef)."""
    cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error.__cause__ \
        if isinstance(error, app_commands.TransformerError) else error
    return cause if isinstance(cause, CanrunUserError) else None


class CanrunTree(app_commands.CommandTree):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """With `[discord] guild_ids` set, commands answer in those servers only: commands an earlier run
        registered globally, or the bot invited to another server, must not queue trials on the owner's machine
        or play the study group's game."""
        guild_ids = self.client.config.discord.guild_ids
        if not guild_ids or interaction.guild_id in guild_ids:
            return True
        try:
            if interaction.type == discord.InteractionType.autocomplete:
                await interaction.response.autocomplete([])  # no suggestions (a message is no answer to typing)
            else:
                await send_ephemeral(interaction, "canrun answers only in its study group's server.")
        except discord.HTTPException:
            log.warning("could not refuse an interaction from server %s", interaction.guild_id, exc_info=True)
        return False

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        mistake = user_error(error)
        if mistake is not None:
            await _answer_user_error(interaction, safe.clip(safe.rich(str(mistake)), safe.CONTENT))
            return
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
            text = APOLOGY
        try:
            await _drop_thinking(interaction)
            await send_ephemeral(interaction, text)
        except discord.HTTPException:
            log.warning("could not tell the user about the error", exc_info=True)


async def _answer_user_error(interaction: discord.Interaction, text: str) -> None:
    try:
        if interaction.response.type == discord.InteractionResponseType.deferred_channel_message:
            # The "thinking..." placeholder (public or private, as deferred) becomes the answer.
            await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
        else:
            await send_ephemeral(interaction, text)
    except discord.HTTPException:
        log.warning("could not tell the user why their command was refused", exc_info=True)


async def _drop_thinking(interaction: discord.Interaction) -> None:
    """A command that deferred publicly and then failed would leave "canrun is thinking..." in the channel
    for good: delete that placeholder (only while it is one), the private answer says what happened."""
    if interaction.response.type != discord.InteractionResponseType.deferred_channel_message:
        return
    original = await interaction.original_response()
    if original.flags.loading:
        await interaction.delete_original_response()

