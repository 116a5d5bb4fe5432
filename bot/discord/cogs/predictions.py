"""/predict, /round, /leaderboard, /mystats, /season: the prediction game in Discord.

The rules live in bot/services/predictions/ and the round reveal in bot/services/round_reveals.py; this cog turns
interactions into calls and answers into embeds and posts. Round cards carry persistent buttons (DynamicItems keyed
by round and repo position), so they keep working after a restart.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.repo_id import RepoRef, parse_repo
from bot.core.verdicts import NOT_FOUND
from bot.discord import game_render as render
from bot.discord import safe
from bot.discord.checks import moderator_only
from bot.discord.reply import NO_MENTIONS, send_ephemeral
from bot.discord.repo_option import Repo, SearchedRepo
from bot.discord.tree import answers_its_errors
from bot.services import predictions as game
from bot.services.hub import HubUnavailable

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot

log = logging.getLogger(__name__)
MAX_CLOSES_IN_MINUTES = 7 * 24 * 60


async def _place(interaction: discord.Interaction, repo_id: str, will_load: bool, confidence: int,
                 round_id: int | None) -> game.Prediction | None:
    """Place or change a prediction and tell the member privately what was recorded (None when refused). Also
    called by the round cards' buttons, whose errors never reach the command tree: a refusal is answered here."""
    services = interaction.client.services
    try:
        prediction = await game.place_prediction(
            services.store, guild_id=interaction.guild_id, user_id=interaction.user.id, repo_id=repo_id,
            will_load=will_load, confidence=confidence, round_id=round_id,
            also_seen=services.game_events.seen_in(interaction.guild_id))
    except game.Refused as e:
        await send_ephemeral(interaction, safe.escape(str(e)))
        return None
    where = f" in round {round_id}" if round_id else ""
    await send_ephemeral(interaction, f"Recorded{where}: **{safe.escape(repo_id)}** "
                                      f"{render.prediction_line(prediction)}. You can change it until it locks.")
    return prediction


def _round_position(interaction: discord.Interaction, match: re.Match[str]) -> tuple[int, int]:
    return int(match["round"]), int(match["pos"])


async def _card_state(interaction: discord.Interaction, round_id: int,
                      position: int) -> tuple[str, game.Prediction | None] | None:
    """The repo a round card is about and the clicker's current prediction on it; None (answered) if stale."""
    store = interaction.client.services.store
    rnd = await game.get_round(store, round_id)
    if rnd is None or rnd.guild_id != interaction.guild_id or not 1 <= position <= len(rnd.repos):
        await send_ephemeral(interaction, "This round card is out of date.")
        return None
    repo_id = rnd.repos[position - 1].repo_id
    return repo_id, await game.get_prediction(store, interaction.guild_id, interaction.user.id, repo_id, round_id)


class RoundVoteButton(discord.ui.DynamicItem[discord.ui.Button],
                      template=r"canrun:round:(?P<round>\d+):(?P<pos>[1-5]):(?P<answer>yes|no)"):
    """Loads / Won't load on a round card; the round, the repo and the answer live in the custom_id."""

    def __init__(self, round_id: int, position: int, will_load: bool):
        label, style = ("Loads", discord.ButtonStyle.success) if will_load else \
            ("Won't load", discord.ButtonStyle.danger)
        answer = "yes" if will_load else "no"
        super().__init__(discord.ui.Button(label=label, style=style,
                                           custom_id=f"canrun:round:{round_id}:{position}:{answer}"))
        self.round_id, self.position, self.will_load = round_id, position, will_load

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]):
        return cls(*_round_position(interaction, match), match["answer"] == "yes")

    @answers_its_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        state = await _card_state(interaction, self.round_id, self.position)
        if state is None:
            return
        repo_id, current = state
        confidence = current.confidence if current else interaction.client.config.predictions.default_confidence
        await _place(interaction, repo_id, self.will_load, confidence, self.round_id)


class RoundConfidenceSelect(discord.ui.DynamicItem[discord.ui.Select],
                            template=r"canrun:round:(?P<round>\d+):(?P<pos>[1-5]):sure"):
    """How sure a member is of their answer on a round card."""

    def __init__(self, round_id: int, position: int):
        options = [discord.SelectOption(label=f"{c} % sure", value=str(c)) for c in render.CONFIDENCE_CHOICES]
        super().__init__(discord.ui.Select(placeholder="How sure are you?", options=options,
                                           custom_id=f"canrun:round:{round_id}:{position}:sure"))
        self.round_id, self.position = round_id, position

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Select, match: re.Match[str]):
        return cls(*_round_position(interaction, match))

    @answers_its_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        values = (interaction.data or {}).get("values") or []
        if not values or not values[0].isdigit() or int(values[0]) not in render.CONFIDENCE_CHOICES:
            await send_ephemeral(interaction, "Pick one of the listed confidences.")
            return
        state = await _card_state(interaction, self.round_id, self.position)
        if state is None:
            return
        repo_id, current = state
        if current is None:
            await send_ephemeral(interaction, "Press **Loads** or **Won't load** first, then pick how sure you are.")
            return
        await _place(interaction, repo_id, current.will_load, int(values[0]), self.round_id)


def round_card_view(round_id: int, position: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RoundVoteButton(round_id, position, True))
    view.add_item(RoundVoteButton(round_id, position, False))
    view.add_item(RoundConfidenceSelect(round_id, position))
    return view


def parse_repo_list(text: str) -> list[str]:
    """Repos separated by spaces or commas; each an id or a huggingface.co link. Raises RepoIdError."""
    items = [t for t in re.split(r"[\s,]+", text) if t]
    return [parse_repo(t).repo_id for t in items]


class PredictionsCog(commands.Cog):
    round_group = app_commands.Group(name="round", description="(moderators) Prediction rounds for study sessions",
                                     default_permissions=discord.Permissions(manage_guild=True), guild_only=True)
    season_group = app_commands.Group(name="season", description="(moderators) Leaderboard seasons",
                                      default_permissions=discord.Permissions(manage_guild=True), guild_only=True)

    def __init__(self, bot: CanrunBot):
        self.bot = bot
        self.store = bot.services.store
        self.reveals = bot.services.reveals

    async def cog_load(self) -> None:
        self.reveals.resume(self, self.bot.wait_until_ready)  # reveals a restart interrupted

    async def cog_unload(self) -> None:
        await self.reveals.stop()

    # ---- /predict ------------------------------------------------------------------------------

    @app_commands.command(name="predict", description="Predict whether a model will load in mlx-lm, before you check")
    @app_commands.describe(repo="Model id or huggingface.co link", will_load="Will mlx_lm.load() succeed?",
                           confidence="How sure you are, 50 to 99 %")
    @app_commands.guild_only()
    async def predict(self, interaction: discord.Interaction, repo: app_commands.Transform[RepoRef, SearchedRepo],
                      will_load: Literal["yes", "no"], confidence: app_commands.Range[int, 50, 99] | None = None) -> None:
        cfg = self.bot.config.predictions
        rnd = await game.current_round(self.store, interaction.guild_id)
        in_round = rnd is not None and rnd.status == "open" and any(r.repo_id == repo.repo_id for r in rnd.repos)
        placed = await _place(interaction, repo.repo_id, will_load == "yes", confidence or cfg.default_confidence,
                              rnd.id if in_round else None)
        if placed is not None and not in_round:  # after the answer: a check may take longer than a reply may
            try:
                await self.bot.services.forecasts.for_prediction(interaction.guild_id, repo.repo_id)
            except Exception:  # the member's prediction stands; canrun just has no row in this group
                log.exception("canrun's forecast on %s failed", repo.repo_id)

    # ---- /round --------------------------------------------------------------------------------

    @round_group.command(name="open", description="Open a round: up to 5 models for everyone to predict")
    @app_commands.describe(repos="Up to 5 model ids or links, separated by spaces or commas",
                           closes_in="Minutes until predictions close (default: until /round close)")
    @app_commands.check(moderator_only)
    async def round_open(self, interaction: discord.Interaction, repos: str,
                         closes_in: app_commands.Range[int, 1, MAX_CLOSES_IN_MINUTES] | None = None) -> None:
        repo_ids = parse_repo_list(repos)
        if not 1 <= len(repo_ids) <= game.MAX_ROUND_REPOS or len(set(repo_ids)) != len(repo_ids):
            raise game.Refused(f"A round has 1 to {game.MAX_ROUND_REPOS} different models.")
        await interaction.response.defer(thinking=True)
        missing = []
        for repo_id in dict.fromkeys(repo_ids):
            try:
                verdict = await self.bot.services.checker.check(parse_repo(repo_id))
            except HubUnavailable:
                continue  # the reveal will tell; a typo is the common case this guards against
            if verdict.verdict == NOT_FOUND:
                missing.append(repo_id)
        # A refusal from here on replaces the public "thinking..." (the tree's on_error).
        if missing:
            raise game.Refused("Not on Hugging Face (a typo?): " + ", ".join(missing))
        in_play = await game.current_round(self.store, interaction.guild_id)
        if in_play is not None and self.reveals.under_way(in_play.id):
            raise game.Refused(f"Round {in_play.id} is being revealed; open the next one when its results are out.")
        rnd = await game.open_round(
            self.store, guild_id=interaction.guild_id, opened_by=interaction.user.id, repos=repo_ids,
            closes_at=time.time() + closes_in * 60 if closes_in else None, channel_id=interaction.channel_id)
        forecasts = await self.bot.services.forecasts.for_round(rnd)  # hidden until the reveal; verdicts cached by now
        await interaction.edit_original_response(embed=render.round_header(rnd, forecasts), allowed_mentions=NO_MENTIONS)
        for position in range(1, len(rnd.repos) + 1):
            # One message per repo: a card holds its two buttons and its select in two of a message's 5 rows.
            await interaction.followup.send(embed=render.round_repo_card(rnd, position, self.bot.config.hf_endpoint),
                                            view=round_card_view(rnd.id, position), allowed_mentions=NO_MENTIONS)

    @round_group.command(name="close", description="Lock the round's predictions")
    @app_commands.check(moderator_only)
    async def round_close(self, interaction: discord.Interaction) -> None:
        rnd = await game.current_round(self.store, interaction.guild_id)
        if rnd is None or rnd.status != "open":
            raise game.Refused("No round is open here.")
        rnd = await game.close_round(self.store, rnd.id)
        await interaction.response.send_message(
            f"🔒 Round {rnd.id} is closed: predictions are locked. A moderator reveals it with `/round reveal`.",
            allowed_mentions=NO_MENTIONS)

    @round_group.command(name="void", description="Take a model out of the round, with a reason everyone sees")
    @app_commands.describe(repo="The model to take out", reason="Why (shown with the results)")
    @app_commands.check(moderator_only)
    async def round_void(self, interaction: discord.Interaction, repo: app_commands.Transform[RepoRef, Repo],
                         reason: app_commands.Range[str, 1, 200]) -> None:
        rnd = await game.latest_round(self.store, interaction.guild_id)
        if rnd is None:
            raise game.Refused("There is no round here.")
        voided = await game.void_round_repo(self.store, rnd.id, repo.repo_id, reason=reason,
                                            voided_by=interaction.user.id)
        await interaction.response.send_message(
            safe.clip(f"🚫 **{safe.escape(repo.repo_id)}** is out of round {rnd.id} ({voided} predictions voided): "
                      f"{safe.escape(reason)}", safe.CONTENT), allowed_mentions=NO_MENTIONS)

    @round_group.command(name="reveal", description="Settle the round (by trial when possible) and post the results")
    @app_commands.check(moderator_only)
    async def round_reveal(self, interaction: discord.Interaction) -> None:
        rnd = await self.reveals.claim(interaction.guild_id)  # not in play, or already revealing: a refusal
        try:
            await interaction.response.defer(thinking=True)
        except BaseException:
            await self.reveals.done(rnd.id)
            raise
        rnd, plan = await self.reveals.plan(rnd, channel_id=interaction.channel_id, moderator_id=interaction.user.id)
        try:
            await interaction.edit_original_response(content=render.reveal_plan(rnd.id, plan),
                                                     allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:  # the trials are queued already: the reveal goes on, the results will show
            log.warning("could not show the reveal plan of round %s", rnd.id, exc_info=True)
        await self.reveals.carry_on(rnd, plan, interaction.channel_id, self)

    # ---- posting for the reveals (RevealPoster) ------------------------------------------------

    async def say(self, channel_id: int | None, text: str) -> None:
        if channel_id is not None:
            try:
                await self.bot.get_partial_messageable(channel_id).send(text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException:
                log.warning("could not post to channel %s: %s", channel_id, text)

    async def post_results(self, channel_id: int, results: game.RoundResults) -> bool:
        try:
            await self.bot.get_partial_messageable(channel_id).send(
                embed=render.round_results(results, self.bot.config.hf_endpoint), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.warning("could not post the results of round %s", results.round.id, exc_info=True)
            return False
        return True

    # ---- /leaderboard, /mystats ----------------------------------------------------------------

    async def _season(self, interaction: discord.Interaction, name: str | None) -> game.Season | None:
        """The season called `name` here (None: all time). Raises game.Refused."""
        if not name:
            return None
        season = await game.season_by_name(self.store, interaction.guild_id, name)
        if season is None:
            raise game.Refused(f"There is no season called {name[:99] + '…' if len(name) > 100 else name} here.")
        return season

    @app_commands.command(name="leaderboard", description="Who predicts best, all time or in a season")
    @app_commands.describe(season="A season's name (default: all time)", page="Page number")
    @app_commands.guild_only()
    async def leaderboard(self, interaction: discord.Interaction, season: str | None = None,
                          page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        chosen = await self._season(interaction, season)
        cfg = self.bot.config.predictions
        board = await game.leaderboard(self.store, interaction.guild_id, season_id=chosen.id if chosen else None,
                                       page=page, page_size=cfg.page_size, min_settled=cfg.min_settled)
        await interaction.response.send_message(embed=render.leaderboard(board, chosen, cfg.min_settled),
                                                allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="mystats", description="Your record and calibration (or another member's)")
    @app_commands.describe(user="Whose stats (default: yours)", season="A season's name (default: all time)")
    @app_commands.guild_only()
    async def mystats(self, interaction: discord.Interaction, user: discord.User | None = None,
                      season: str | None = None) -> None:
        chosen = await self._season(interaction, season)
        member = user or interaction.user
        cfg = self.bot.config.predictions
        stats = await game.member_stats(self.store, interaction.guild_id, member.id,
                                        season_id=chosen.id if chosen else None, min_settled=cfg.min_settled)
        embed = render.member_stats(stats, chosen, cfg.min_settled)
        chart = await asyncio.to_thread(calibration_png, stats, member.display_name)
        if chart is None:
            await interaction.response.send_message(embed=embed, allowed_mentions=NO_MENTIONS)
            return
        embed.set_image(url="attachment://calibration.png")
        await interaction.response.send_message(embed=embed, file=discord.File(io.BytesIO(chart), "calibration.png"),
                                                allowed_mentions=NO_MENTIONS)

    # ---- /season -------------------------------------------------------------------------------

    @season_group.command(name="start", description="Start a leaderboard season")
    @app_commands.describe(name="The season's name")
    @app_commands.check(moderator_only)
    async def season_start(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 60]) -> None:
        started = await game.start_season(self.store, interaction.guild_id, name)
        await interaction.response.send_message(
            f"🏁 Season **{safe.escape(started.name)}** has started: predictions settled from now on count in it.",
            allowed_mentions=NO_MENTIONS)

    @season_group.command(name="end", description="End the running season")
    @app_commands.check(moderator_only)
    async def season_end(self, interaction: discord.Interaction) -> None:
        ended = await game.end_season(self.store, interaction.guild_id)
        await interaction.response.send_message(
            f"🏁 Season **{safe.escape(ended.name)}** has ended. {safe.code(f'/leaderboard season:{ended.name}')} "
            "shows its final standings.", allowed_mentions=NO_MENTIONS)


def calibration_png(stats: game.MemberStats, name: str) -> bytes | None:
    """The calibration chart, or None when there is nothing to draw yet."""
    from bot.render.calibration_chart import render_calibration_chart  # Pillow: imported on first use

    return render_calibration_chart(stats.calibration, f"Calibration of {name}")


async def setup(bot: CanrunBot) -> None:
    bot.add_dynamic_items(RoundVoteButton, RoundConfidenceSelect)
    await bot.add_cog(PredictionsCog(bot))
