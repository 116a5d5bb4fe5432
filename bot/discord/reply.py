"""Answering an interaction, and carrying on in the channel when its token has expired.

An interaction token lives 15 minutes; a slow answer (or a restart of Discord's side) can outlive it.
Then edits of the original response fail with Unknown Webhook / Unknown Interaction, and a public answer
goes to a regular channel message instead, which later edits keep updating; a private one is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

log = logging.getLogger(__name__)

# Discord error codes meaning "this interaction's token can no longer be used".
EXPIRED_CODES = {10015, 10062, 50027}
NO_MENTIONS = discord.AllowedMentions.none()


def token_expired(error: discord.HTTPException) -> bool:
    return isinstance(error, discord.NotFound) or error.code in EXPIRED_CODES


class Reply:
    """The message that answers one interaction: the original response, or a channel message after expiry."""

    def __init__(self, interaction: discord.Interaction):
        self.interaction = interaction
        self.fallback: discord.Message | None = None

    async def edit(self, **fields: Any) -> None:
        fields.setdefault("allowed_mentions", NO_MENTIONS)
        if self.fallback is not None:
            await self.fallback.edit(**fields)
            return
        try:
            await self.interaction.edit_original_response(**fields)
        except discord.HTTPException as e:
            if not token_expired(e):
                raise
            log.info("interaction token expired; answering in channel %s", self.interaction.channel_id)
            self.fallback = await self._channel_send(**fields)

    async def _channel_send(self, **fields: Any) -> discord.Message:
        channel = self.interaction.channel
        if channel is None:  # not cached: a partial channel is enough to post
            channel = self.interaction.client.get_partial_messageable(self.interaction.channel_id)
        fields.pop("attachments", None)
        return await channel.send(**fields)


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """A short private message to whoever used the command, however far the interaction has got. Once the
    interaction's token has expired it is dropped (and logged): a private answer ("Recorded: won't load, 95 %
    sure") never goes to the channel, where everyone would read it."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as e:
        if not token_expired(e):
            raise
        log.warning("a private answer to %s was dropped: the interaction expired before it (%s)",
                    interaction.user, e.text or e.status)
