"""The `repo` option of the slash commands: what a member typed -> a RepoRef, in one place.

A malformed id raises RepoIdError (a CanrunUserError), which the tree's on_error answers privately, quoting what
was typed. SearchedRepo also autocompletes from Hugging Face's model ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.core.repo_id import RepoIdError, RepoRef, parse_repo
from bot.discord import safe

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot


class Repo(app_commands.Transformer):
    async def transform(self, interaction: discord.Interaction, value: str) -> RepoRef:
        try:
            return parse_repo(value)
        except RepoIdError as e:
            raise RepoIdError(f"{e}\nYou typed: `{safe.clip(value.replace('`', ''), 100)}`") from e


class SearchedRepo(Repo):
    async def autocomplete(self, interaction: discord.Interaction, value: str) -> list[app_commands.Choice[str]]:
        return await repo_choices(interaction.client, value)


async def repo_choices(bot: CanrunBot, current: str) -> list[app_commands.Choice[str]]:
    """Hugging Face model ids matching what was typed, within Discord's limits."""
    ids = await bot.services.model_search.complete(current)
    return [app_commands.Choice(name=safe.clip(i, safe.CHOICE_NAME), value=i) for i in ids
            if len(i) <= safe.CHOICE_VALUE][: safe.CHOICES]
