"""/trial and /trials: moderators queue real loads of a model on this machine and watch them run."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.repo_id import RepoRef
from bot.discord import safe
from bot.discord.checks import is_moderator, moderator_only
from bot.discord.reply import NO_MENTIONS, send_ephemeral, token_expired
from bot.discord.repo_option import Repo
from bot.discord.tree import answers_its_errors
from bot.discord.trial_render import trial_embed, trial_list_line
from bot.services import predictions as game
from bot.services.host import machine_name
from bot.core.trial_outcome import TrialProgress
from bot.services.trial_queue import Trial

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot

log = logging.getLogger(__name__)
# Interaction tokens last 15 minutes; past this age the progress moves to a regular channel message.
TOKEN_SAFE_SECONDS = 14 * 60


class CancelTrialButton(discord.ui.DynamicItem[discord.ui.Button], template=r"canrun:trial:cancel:(?P<id>\d+)"):
    """A Cancel button that still works after a restart: the trial id lives in its custom_id."""

    def __init__(self, trial_id: int):
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger,
                                           custom_id=f"canrun:trial:cancel:{trial_id}"))
        self.trial_id = trial_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]):
        return cls(int(match["id"]))

    @answers_its_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        bot: CanrunBot = interaction.client
        queue = bot.services.trials.queue
        trial = await queue.get(self.trial_id)
        if trial is None:
            await send_ephemeral(interaction, "That trial no longer exists.")
            return
        if interaction.user.id != trial.requested_by and not is_moderator(bot, interaction.user):
            await send_ephemeral(interaction, "Only whoever asked for this trial, or a moderator, can cancel it.")
            return
        if trial.finished:
            await send_ephemeral(interaction, f"Trial #{trial.id} has already ended ({trial.status}).")
            return
        # Answer within Discord's 3 s first: cancelling edits the trial's message, which may wait on rate limits.
        await interaction.response.defer(ephemeral=True, thinking=True)
        trial = await queue.cancel(trial.id, interaction.user.id)
        if trial is None:
            await send_ephemeral(interaction, "That trial no longer exists.")
        elif trial.finished and trial.status != "cancelled":
            await send_ephemeral(interaction, f"Trial #{trial.id} ended before it could be cancelled ({trial.status}).")
        else:
            await send_ephemeral(interaction, f"Cancelling trial #{trial.id} (if it had already finished, its result "
                                              "stands).")


class TrialMessage:
    """Where one trial's progress is shown: the /trial response while its token is young, else a channel message."""

    def __init__(self, bot: CanrunBot, trial: Trial, interaction: discord.Interaction | None = None):
        self.bot = bot
        self.trial_id = trial.id
        self.channel_id = trial.channel_id
        self.message_id = trial.message_id
        self.interaction = interaction
        self.started = time.monotonic()
        self.last_edit = 0.0
        self.last_phase: str | None = None

    def due(self, trial: Trial, progress: TrialProgress | None, interval: float) -> bool:
        """Phase changes and the end always show; progress within a phase at most every `interval` seconds."""
        phase = progress.phase if progress else trial.status
        if trial.finished or phase != self.last_phase or progress is None:
            return True
        return time.monotonic() - self.last_edit >= interval

    async def show(self, trial: Trial, **fields) -> None:
        self.last_edit = time.monotonic()
        self.last_phase = trial.phase if trial.status == "running" else trial.status
        fields["allowed_mentions"] = NO_MENTIONS
        if self.interaction is not None and time.monotonic() - self.started < TOKEN_SAFE_SECONDS:
            try:
                message = await self.interaction.edit_original_response(**fields)
                if self.message_id is None:  # remembered, so after a restart the same message is edited
                    self.message_id = message.id
                    await self.bot.services.trials.queue.set_message(self.trial_id, message.id)
                return
            except discord.HTTPException as e:
                if not token_expired(e):
                    raise
        self.interaction = None
        if self.channel_id is None:
            return
        channel = self.bot.get_partial_messageable(self.channel_id)
        if self.message_id is not None:
            try:
                await channel.get_partial_message(self.message_id).edit(**fields)
                return
            except discord.NotFound:
                pass  # deleted by someone: post a new one
        message = await channel.send(**fields)
        self.message_id = message.id
        await self.bot.services.trials.queue.set_message(self.trial_id, message.id)


class TrialsCog(commands.Cog):
    trials = app_commands.Group(name="trials", description=f"Results of trial loads on {machine_name()}")

    def __init__(self, bot: CanrunBot):
        self.bot = bot
        self.trials = bot.services.trials
        self.queue = self.trials.queue
        self.messages: dict[int, TrialMessage] = {}

    async def cog_load(self) -> None:
        self.queue.listeners.append(self.on_trial_update)
        self.trials.settled_listeners.append(self.announce_settlement)
        self.recovered_shown = asyncio.create_task(self._show_recovered())

    async def cog_unload(self) -> None:
        self.queue.listeners.remove(self.on_trial_update)
        self.trials.settled_listeners.remove(self.announce_settlement)
        self.recovered_shown.cancel()

    async def _show_recovered(self) -> None:
        """Trials that a restart interrupted or expired: their messages still say running or queued."""
        await self.bot.wait_until_ready()
        for trial_id in self.queue.recovered:
            trial = await self.queue.get(trial_id)
            if trial is not None and trial.message_id is not None:
                try:
                    await self._show(TrialMessage(self.bot, trial), trial, None)
                except discord.HTTPException:
                    log.info("could not update the message of recovered trial #%s", trial_id, exc_info=True)

    @app_commands.command(name="trial", description=f"(moderators) Really load a model with mlx-lm on {machine_name()}")
    @app_commands.describe(repo="Model id or huggingface.co link", prompt="What to generate from",
                           max_tokens="How many tokens to generate")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.check(moderator_only)
    async def trial(self, interaction: discord.Interaction, repo: app_commands.Transform[RepoRef, Repo],
                    prompt: str | None = None, max_tokens: app_commands.Range[int, 1, 4096] | None = None) -> None:
        self.trials.validate(max_tokens)  # answered privately, before the public "thinking..."
        await interaction.response.defer(thinking=True)
        queued = await self.trials.request(repo, requested_by=interaction.user.id, guild_id=interaction.guild_id,
                                           channel_id=interaction.channel_id, prompt=prompt, max_tokens=max_tokens)
        handle = self.messages.setdefault(queued.id, TrialMessage(self.bot, queued, interaction))
        trial = await self.queue.get(queued.id)
        if trial.status == "queued":  # it may already be running (or done) if the queue was empty
            await self._show(handle, trial, None)

    async def on_trial_update(self, trial: Trial, progress: TrialProgress | None) -> None:
        handle = self.messages.get(trial.id)
        if handle is None:  # a trial queued before a restart: its progress goes to its channel
            handle = self.messages[trial.id] = TrialMessage(self.bot, trial)
        if handle.due(trial, progress, self.bot.config.trials.progress_interval_seconds):
            await self._show(handle, trial, progress)
        if trial.finished:
            self.messages.pop(trial.id, None)
        elif trial.status == "running" and progress is None:
            await self._refresh_positions()

    async def _show(self, handle: TrialMessage, trial: Trial, progress: TrialProgress | None) -> None:
        position = await self.queue.position(trial.id) if trial.status == "queued" else None
        view = None
        if not trial.finished:
            view = discord.ui.View(timeout=None)
            view.add_item(CancelTrialButton(trial.id))
        embed = trial_embed(trial, progress, position=position, hub_url=self.bot.config.hf_endpoint)
        await handle.show(trial, content=None, embed=embed, view=view)

    async def _refresh_positions(self) -> None:
        """When a trial starts, everyone behind it moves up one place."""
        for trial in await self.queue.waiting():
            handle = self.messages.get(trial.id)
            if trial.status == "queued" and handle is not None:
                await self._show(handle, trial, None)

    @trials.command(name="recent", description="The latest trial loads and how they went")
    async def recent(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(embed=self._list("Recent trials", await self.queue.recent(10)),
                                                allowed_mentions=NO_MENTIONS)

    @trials.command(name="repo", description="The trial history of one model")
    async def history(self, interaction: discord.Interaction, repo: app_commands.Transform[RepoRef, Repo]) -> None:
        trials = await self.queue.recent(10, repo_id=repo.repo_id)
        await interaction.response.send_message(embed=self._list(f"Trials of {repo.repo_id}", trials),
                                                allowed_mentions=NO_MENTIONS)

    def _list(self, title: str, trials: list[Trial]) -> discord.Embed:
        description = "\n".join(trial_list_line(t) for t in trials) or "No trials yet."
        return discord.Embed(title=safe.clip(title, safe.TITLE), description=safe.clip(description, safe.DESCRIPTION))

    async def announce_settlement(self, trial: Trial, settlement: game.Settlement) -> None:
        """Say in the trial's channel what it settled, and which verdict-based scores it overturned."""
        if trial.channel_id is None or not (settlement.settled or settlement.resettled):
            return
        answer = "loads" if trial.loaded else "does not load"
        lines = [f"🎯 Trial #{trial.id} says **{safe.escape(trial.repo_id)}** {answer}."]
        if settlement.settled:
            lines.append(f"It settled {_count(settlement.settled, 'open prediction')}.")
        if settlement.resettled:
            lines.append(f"canrun's static verdict had said the opposite: {_count(settlement.resettled, 'prediction')} "
                         "settled by that verdict were scored again by the trial.")
        try:
            await self.bot.get_partial_messageable(trial.channel_id).send(" ".join(lines), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.warning("could not announce what trial #%s settled", trial.id, exc_info=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def setup(bot: CanrunBot) -> None:
    bot.add_dynamic_items(CancelTrialButton)
    await bot.add_cog(TrialsCog(bot))
