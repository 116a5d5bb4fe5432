"""/predict, /round, /leaderboard, /mystats, /season: the prediction game in Discord.

The rules live in bot/services/predictions.py; this cog turns interactions into calls and answers into embeds.
Round cards carry persistent buttons (DynamicItems keyed by round and repo position), so they keep working
after a restart.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.repo_id import RepoIdError, parse_repo
from bot.core.trial_policy import refusal
from bot.core.verdicts import LOADS, NOT_FOUND, Verdict
from bot.discord import game_render as render
from bot.discord import safe
from bot.discord.checks import moderator_only
from bot.discord.cogs.canrun import repo_choices
from bot.discord.reply import NO_MENTIONS, send_ephemeral
from bot.services import predictions as game
from bot.services.game_events import settles
from bot.services.hub import HubUnavailable
from bot.services.trial_queue import TrialRefused

if TYPE_CHECKING:
    from bot.discord.app import CanrunBot

log = logging.getLogger(__name__)
MAX_CLOSES_IN_MINUTES = 7 * 24 * 60
REVEAL_PENDING = "reveal_pending:"  # bot_state key prefix: + round id -> {"channel_id", "moderator_id"}


async def _place(interaction: discord.Interaction, repo_id: str, will_load: bool, confidence: int,
                 round_id: int | None) -> None:
    """Place or change a prediction and tell the member privately what was recorded."""
    bot: CanrunBot = interaction.client
    try:
        prediction = await game.place_prediction(
            bot.store, guild_id=interaction.guild_id, user_id=interaction.user.id, repo_id=repo_id,
            will_load=will_load, confidence=confidence, round_id=round_id,
            also_seen=bot.game_events.seen_in(interaction.guild_id))
    except game.Refused as e:
        await send_ephemeral(interaction, safe.escape(str(e)))
        return
    where = f" in round {round_id}" if round_id else ""
    await send_ephemeral(interaction, f"Recorded{where}: **{safe.escape(repo_id)}** "
                                      f"{render.prediction_line(prediction)}. You can change it until it locks.")


def _round_position(interaction: discord.Interaction, match: re.Match[str]) -> tuple[int, int]:
    return int(match["round"]), int(match["pos"])


async def _card_state(interaction: discord.Interaction, round_id: int,
                      position: int) -> tuple[str, game.Prediction | None] | None:
    """The repo a round card is about and the clicker's current prediction on it; None (answered) if stale."""
    store = interaction.client.store
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


@dataclass
class RevealPlan:
    """How each live repo of a round is settled: a trial (its id) or the static verdict (its answer)."""

    trials: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, bool] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # neither possible (Hugging Face unreachable): the reveal waits
    no_trial: dict[str, str] = field(default_factory=dict)  # repo -> why the verdict settles it though trials are on
    voided: dict[str, str] = field(default_factory=dict)  # repo -> why it was taken out (its answer says nothing)
    answers: dict[str, bool] = field(default_factory=dict)  # repo -> the verdict's answer, also the fallback of a
    #                                                         trial that cannot tell


class PredictionsCog(commands.Cog):
    round_group = app_commands.Group(name="round", description="(moderators) Prediction rounds for study sessions",
                                     default_permissions=discord.Permissions(manage_guild=True), guild_only=True)
    season_group = app_commands.Group(name="season", description="(moderators) Leaderboard seasons",
                                      default_permissions=discord.Permissions(manage_guild=True), guild_only=True)

    def __init__(self, bot: CanrunBot):
        self.bot = bot
        self.revealing: set[int] = set()  # rounds whose reveal is under way in this process
        self.reveal_tasks: set[asyncio.Task] = set()

    async def cog_load(self) -> None:
        self._spawn(self._resume_reveals())

    async def cog_unload(self) -> None:
        tasks = list(self.reveal_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.reveal_tasks.add(task)
        task.add_done_callback(self.reveal_tasks.discard)

    async def _resume_reveals(self) -> None:
        """Reveals that a restart interrupted (waiting for trials, or about to post): finish each, side by side."""
        await self.bot.wait_until_ready()
        for key, value in await self.bot.store.state_items(REVEAL_PENDING):
            round_id = int(key.removeprefix(REVEAL_PENDING))
            if round_id not in self.revealing:
                self.revealing.add(round_id)  # at once: a /round reveal meanwhile says it is under way
                self._spawn(self._resume_reveal(round_id, json.loads(value)))

    async def _resume_reveal(self, round_id: int, pending: dict) -> None:
        channel = pending.get("channel_id")
        try:
            rnd = await game.get_round(self.bot.store, round_id)
            if rnd is None:
                await self._reveal_done(round_id)
                return
            log.info("resuming the reveal of round %s after a restart", rnd.id)
            plan = RevealPlan()
            if rnd.status != "revealed":  # else only the results are still to be posted
                plan = await self._plan_reveal(rnd, pending["moderator_id"])
            if plan.unknown:
                await self._say(channel, f"Round {rnd.id} could not be revealed after a restart: Hugging Face "
                                         "could not be reached. A moderator can run `/round reveal` again.")
                await self._reveal_done(rnd.id)
                return
        except asyncio.CancelledError:
            self.revealing.discard(round_id)
            raise
        except Exception:  # one broken reveal must not keep the others from finishing
            log.exception("resuming the reveal of round %s failed", round_id)
            await self._say(channel, f"Revealing round {round_id} failed; a moderator can try `/round reveal` again.")
            await self._reveal_done(round_id)
            return
        await self._finish_reveal(rnd, plan, channel)

    # ---- /predict ------------------------------------------------------------------------------

    @app_commands.command(name="predict", description="Predict whether a model will load in mlx-lm, before you check")
    @app_commands.describe(repo="Model id or huggingface.co link", will_load="Will mlx_lm.load() succeed?",
                           confidence="How sure you are, 50 to 99 %")
    @app_commands.guild_only()
    async def predict(self, interaction: discord.Interaction, repo: str, will_load: Literal["yes", "no"],
                      confidence: app_commands.Range[int, 50, 99] | None = None) -> None:
        try:
            ref = parse_repo(repo)
        except RepoIdError as e:
            await send_ephemeral(interaction, str(e))
            return
        cfg = self.bot.config.predictions
        rnd = await game.current_round(self.bot.store, interaction.guild_id)
        in_round = rnd is not None and rnd.status == "open" and any(r.repo_id == ref.repo_id for r in rnd.repos)
        await _place(interaction, ref.repo_id, will_load == "yes", confidence or cfg.default_confidence,
                     rnd.id if in_round else None)

    @predict.autocomplete("repo")
    async def repo_autocomplete(self, interaction: discord.Interaction, current: str):
        return await repo_choices(self.bot, current)

    # ---- /round --------------------------------------------------------------------------------

    @round_group.command(name="open", description="Open a round: up to 5 models for everyone to predict")
    @app_commands.describe(repos="Up to 5 model ids or links, separated by spaces or commas",
                           closes_in="Minutes until predictions close (default: until /round close)")
    @app_commands.check(moderator_only)
    async def round_open(self, interaction: discord.Interaction, repos: str,
                         closes_in: app_commands.Range[int, 1, MAX_CLOSES_IN_MINUTES] | None = None) -> None:
        try:
            repo_ids = parse_repo_list(repos)
        except RepoIdError as e:
            await send_ephemeral(interaction, str(e))
            return
        if not 1 <= len(repo_ids) <= game.MAX_ROUND_REPOS or len(set(repo_ids)) != len(repo_ids):
            await send_ephemeral(interaction, f"A round has 1 to {game.MAX_ROUND_REPOS} different models.")
            return
        await interaction.response.defer(thinking=True)
        missing = []
        for repo_id in dict.fromkeys(repo_ids):
            try:
                verdict = await self.bot.checker.check(parse_repo(repo_id))
            except HubUnavailable:
                continue  # the reveal will tell; a typo is the common case this guards against
            if verdict.verdict == NOT_FOUND:
                missing.append(repo_id)
        if missing:
            await self._fail(interaction, "Not on Hugging Face (a typo?): " + ", ".join(map(safe.escape, missing)))
            return
        in_play = await game.current_round(self.bot.store, interaction.guild_id)
        if in_play is not None and in_play.id in self.revealing:
            await self._fail(interaction, f"Round {in_play.id} is being revealed; open the next one when its "
                                          "results are out.")
            return
        try:
            rnd = await game.open_round(
                self.bot.store, guild_id=interaction.guild_id, opened_by=interaction.user.id, repos=repo_ids,
                closes_at=time.time() + closes_in * 60 if closes_in else None, channel_id=interaction.channel_id)
        except game.Refused as e:
            await self._fail(interaction, safe.escape(str(e)))
            return
        await interaction.edit_original_response(embed=render.round_header(rnd), allowed_mentions=NO_MENTIONS)
        for position in range(1, len(rnd.repos) + 1):
            # One message per repo: a card holds its two buttons and its select in two of a message's 5 rows.
            await interaction.followup.send(embed=render.round_repo_card(rnd, position, self.bot.config.hf_endpoint),
                                            view=round_card_view(rnd.id, position), allowed_mentions=NO_MENTIONS)

    @round_group.command(name="close", description="Lock the round's predictions")
    @app_commands.check(moderator_only)
    async def round_close(self, interaction: discord.Interaction) -> None:
        rnd = await game.current_round(self.bot.store, interaction.guild_id)
        if rnd is None or rnd.status != "open":
            await send_ephemeral(interaction, "No round is open here.")
            return
        rnd = await game.close_round(self.bot.store, rnd.id)
        await interaction.response.send_message(
            f"🔒 Round {rnd.id} is closed: predictions are locked. A moderator reveals it with `/round reveal`.",
            allowed_mentions=NO_MENTIONS)

    @round_group.command(name="void", description="Take a model out of the round, with a reason everyone sees")
    @app_commands.describe(repo="The model to take out", reason="Why (shown with the results)")
    @app_commands.check(moderator_only)
    async def round_void(self, interaction: discord.Interaction, repo: str,
                         reason: app_commands.Range[str, 1, 200]) -> None:
        rnd = await game.latest_round(self.bot.store, interaction.guild_id)
        try:
            ref = parse_repo(repo)
            if rnd is None:
                raise game.Refused("There is no round here.")
            voided = await game.void_round_repo(self.bot.store, rnd.id, ref.repo_id, reason=reason,
                                                voided_by=interaction.user.id)
        except (RepoIdError, game.Refused) as e:
            await send_ephemeral(interaction, safe.escape(str(e)))
            return
        await interaction.response.send_message(
            safe.clip(f"🚫 **{safe.escape(ref.repo_id)}** is out of round {rnd.id} ({voided} predictions voided): "
                      f"{safe.escape(reason)}", safe.CONTENT), allowed_mentions=NO_MENTIONS)

    @round_group.command(name="reveal", description="Settle the round (by trial when possible) and post the results")
    @app_commands.check(moderator_only)
    async def round_reveal(self, interaction: discord.Interaction) -> None:
        rnd = await game.current_round(self.bot.store, interaction.guild_id)
        if rnd is None:
            await send_ephemeral(interaction, "No round is in play here.")
            return
        if rnd.id in self.revealing:
            await send_ephemeral(interaction, f"Round {rnd.id} is already being revealed.")
            return
        self.revealing.add(rnd.id)
        try:
            await interaction.response.defer(thinking=True)
            if rnd.status == "open":
                rnd = await game.close_round(self.bot.store, rnd.id)
            # Remembered until the results are out, so a restart in between resumes the reveal.
            await self.bot.store.state_put(f"{REVEAL_PENDING}{rnd.id}", json.dumps(
                {"channel_id": interaction.channel_id, "moderator_id": interaction.user.id}))
            plan = await self._plan_reveal(rnd, interaction.user.id)
        except BaseException:
            await self._reveal_done(rnd.id)  # the moderator hears of the failure (tree) and can reveal again
            raise
        lines = [f"🔒 Round {rnd.id} is closed. Settling:"]
        lines += [f"• **{safe.escape(r)}** by trial #{t} (the results follow when it ends)" for r, t in plan.trials.items()]
        lines += [f"• **{safe.escape(r)}** by canrun's static verdict"
                  + (f" (no trial: {safe.rich(plan.no_trial[r].rstrip('.'))})" if r in plan.no_trial else "")
                  for r in plan.verdicts]
        lines += [f"• **{safe.escape(r)}** voided: {safe.escape(why)}" for r, why in plan.voided.items()]
        lines += [f"• **{safe.escape(r)}**: Hugging Face could not be reached; try `/round reveal` again"
                  for r in plan.unknown]
        try:
            await interaction.edit_original_response(content=safe.clip("\n".join(lines), safe.CONTENT),
                                                     allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:  # the trials are queued already: the reveal goes on, the results will show
            log.warning("could not show the reveal plan of round %s", rnd.id, exc_info=True)
        if plan.unknown:
            await self._reveal_done(rnd.id)
            return
        # Trials may take many minutes, longer than an interaction token lives: the results go to the channel.
        self._spawn(self._finish_reveal(rnd, plan, interaction.channel_id))

    async def _plan_reveal(self, rnd: game.Round, moderator_id: int) -> RevealPlan:
        plan = RevealPlan()
        by_trial = self.bot.config.trials.enabled and self.bot.config.predictions.round_reveal_by_trial
        for repo in rnd.repos:
            if repo.void_reason is not None:
                continue
            try:
                verdict = await self.bot.checker.check(parse_repo(repo.repo_id))
            except HubUnavailable:
                plan.unknown.append(repo.repo_id)
                continue
            if not settles(verdict):  # gated or gone since the round opened: nobody can be right or wrong
                why = f"Hugging Face now says {verdict.verdict}, so load() cannot be judged"
                await game.void_round_repo(self.bot.store, rnd.id, repo.repo_id, reason=why, voided_by=moderator_id)
                plan.voided[repo.repo_id] = why
                continue
            plan.answers[repo.repo_id] = verdict.verdict == LOADS
            trial_id, why_not = await self._trial_for(repo.repo_id, rnd, verdict, moderator_id) if by_trial \
                else (None, None)
            if trial_id is not None:
                plan.trials[repo.repo_id] = trial_id
            else:
                plan.verdicts[repo.repo_id] = verdict.verdict == LOADS
                if why_not:
                    plan.no_trial[repo.repo_id] = why_not
        return plan

    async def _trial_for(self, repo_id: str, rnd: game.Round, verdict: Verdict,
                         moderator_id: int) -> tuple[int | None, str | None]:
        """A trial that settles this repo: one judged since the round closed, one under way, or a new one.
        Else (None, why): the verdict settles it."""
        queue = self.bot.trial_queue
        done = await queue.latest_judged(repo_id, since=rnd.closed_at or rnd.opened_at)
        if done is not None:
            return done.id, None
        running = await queue.in_flight(repo_id)
        if running is not None:
            return running.id, None
        why_not = refusal(verdict, self.bot.trial_policy, disk_available_bytes=self.bot.model_cache.available_bytes())
        if why_not:
            return None, why_not
        cfg = self.bot.config.trials
        try:
            trial = await queue.enqueue(repo_id=repo_id, revision=None, requested_by=moderator_id,
                                        guild_id=rnd.guild_id, channel_id=rnd.channel_id, prompt=cfg.default_prompt,
                                        max_tokens=cfg.default_max_tokens, verdict=verdict,
                                        per_user_limit=False)
        except TrialRefused as e:
            return None, str(e)
        return trial.id, None

    async def _finish_reveal(self, rnd: game.Round, plan: RevealPlan, channel_id: int | None) -> None:
        try:
            outcomes: dict[str, tuple[bool, game.Source]] = {r: (loads, "verdict") for r, loads in plan.verdicts.items()}
            for repo_id, trial_id in plan.trials.items():
                trial = await self.bot.trial_queue.wait_finished(trial_id)
                if trial.loaded is not None:
                    outcomes[repo_id] = (trial.loaded, "trial")
                else:  # cancelled, timed out, failed before load(): the trial could not tell
                    outcomes[repo_id] = (plan.answers[repo_id], "verdict")
            for repo_id, (_, source) in list(outcomes.items()):
                # A trial of a verdict-settled repo may have ended while other trials ran: the truth wins.
                judged = await self.bot.trial_queue.latest_judged(repo_id, since=rnd.closed_at or rnd.opened_at) \
                    if source == "verdict" and hasattr(self.bot, "trial_queue") else None
                if judged is not None:
                    outcomes[repo_id] = (judged.loaded, "trial")
            # A moderator may have voided a repo while its trial ran.
            current = await game.get_round(self.bot.store, rnd.id)
            live = {r.repo_id for r in current.repos if r.void_reason is None}
            results = await game.reveal_round(self.bot.store, rnd.id,
                                              {r: o for r, o in outcomes.items() if r in live})
        except asyncio.CancelledError:  # the bot is closing: the reveal resumes at the next start
            self.revealing.discard(rnd.id)
            raise
        except Exception:
            log.exception("revealing round %s failed", rnd.id)
            await self._say(channel_id, f"Revealing round {rnd.id} failed; a moderator can try `/round reveal` again.")
            await self._reveal_done(rnd.id)
            return
        if channel_id is not None:
            try:
                await self.bot.get_partial_messageable(channel_id).send(
                    embed=render.round_results(results, self.bot.config.hf_endpoint), allowed_mentions=NO_MENTIONS)
            except discord.HTTPException:  # settled; only the post is missing: kept, so the next start posts it
                log.warning("could not post the results of round %s; posting them at the next start", rnd.id,
                            exc_info=True)
                self.revealing.discard(rnd.id)
                return
        await self._reveal_done(rnd.id)

    async def _reveal_done(self, round_id: int) -> None:
        self.revealing.discard(round_id)
        await self.bot.store.state_delete(f"{REVEAL_PENDING}{round_id}")

    async def _say(self, channel_id: int | None, text: str) -> None:
        if channel_id is not None:
            try:
                await self.bot.get_partial_messageable(channel_id).send(text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException:
                log.warning("could not post to channel %s: %s", channel_id, text)

    @staticmethod
    async def _fail(interaction: discord.Interaction, text: str) -> None:
        """After a defer the 'thinking' message is public: replace it with the reason."""
        await interaction.edit_original_response(content=safe.clip(text, safe.CONTENT), allowed_mentions=NO_MENTIONS)

    # ---- /leaderboard, /mystats ----------------------------------------------------------------

    async def _season(self, interaction: discord.Interaction, name: str | None) -> tuple[bool, game.Season | None]:
        if not name:
            return True, None
        season = await game.season_by_name(self.bot.store, interaction.guild_id, name)
        if season is None:
            await send_ephemeral(interaction, f"There is no season called {safe.escape(safe.clip(name, 100))} here.")
            return False, None
        return True, season

    @app_commands.command(name="leaderboard", description="Who predicts best, all time or in a season")
    @app_commands.describe(season="A season's name (default: all time)", page="Page number")
    @app_commands.guild_only()
    async def leaderboard(self, interaction: discord.Interaction, season: str | None = None,
                          page: app_commands.Range[int, 1, 10_000] = 1) -> None:
        ok, chosen = await self._season(interaction, season)
        if not ok:
            return
        cfg = self.bot.config.predictions
        board = await game.leaderboard(self.bot.store, interaction.guild_id, season_id=chosen.id if chosen else None,
                                       page=page, page_size=cfg.page_size, min_settled=cfg.min_settled)
        await interaction.response.send_message(embed=render.leaderboard(board, chosen, cfg.min_settled),
                                                allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="mystats", description="Your record and calibration (or another member's)")
    @app_commands.describe(user="Whose stats (default: yours)", season="A season's name (default: all time)")
    @app_commands.guild_only()
    async def mystats(self, interaction: discord.Interaction, user: discord.User | None = None,
                      season: str | None = None) -> None:
        ok, chosen = await self._season(interaction, season)
        if not ok:
            return
        member = user or interaction.user
        cfg = self.bot.config.predictions
        stats = await game.member_stats(self.bot.store, interaction.guild_id, member.id,
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
        try:
            started = await game.start_season(self.bot.store, interaction.guild_id, name)
        except game.Refused as e:
            await send_ephemeral(interaction, safe.escape(str(e)))
            return
        await interaction.response.send_message(
            f"🏁 Season **{safe.escape(started.name)}** has started: predictions settled from now on count in it.",
            allowed_mentions=NO_MENTIONS)

    @season_group.command(name="end", description="End the running season")
    @app_commands.check(moderator_only)
    async def season_end(self, interaction: discord.Interaction) -> None:
        try:
            ended = await game.end_season(self.bot.store, interaction.guild_id)
        except game.Refused as e:
            await send_ephemeral(interaction, safe.escape(str(e)))
            return
        await interaction.response.send_message(
            f"🏁 Season **{safe.escape(ended.name)}** has ended. `/leaderboard season:{safe.escape(ended.name)}` "
            "shows its final standings.", allowed_mentions=NO_MENTIONS)


def calibration_png(stats: game.MemberStats, name: str) -> bytes | None:
    """The calibration chart, or None when there is nothing to draw yet."""
    from bot.render.calibration_chart import render_calibration_chart  # Pillow: imported on first use

    return render_calibration_chart(stats.calibration, f"Calibration of {name}")
