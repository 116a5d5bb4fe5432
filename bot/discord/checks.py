"""Who may use the moderator commands: Manage Server, or a role listed in [discord] moderator_roles."""

from __future__ import annotations

import discord


def is_moderator(bot, member: discord.abc.User) -> bool:
    perms = getattr(member, "guild_permissions", None)
    if perms is not None and perms.manage_guild:
        return True
    roles = {r.name for r in getattr(member, "roles", [])}
    return bool(roles & set(bot.config.discord.moderator_roles))


async def moderator_only(interaction: discord.Interaction) -> bool:
    """An app_commands check; a refusal is answered privately by the tree's error handler."""
    return is_moderator(interaction.client, interaction.user)
