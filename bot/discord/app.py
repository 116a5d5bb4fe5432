"""The Discord bot: one commands.Bot subclass that owns the store and services, and `run_bot`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import sys
from logging.handlers import RotatingFileHandler

import discord
import discord.gateway
import discord.http
import yarl
from discord.ext import commands

from bot.config import Config
from bot.core.trial_policy import GB
from bot.discord import safe
from bot.discord.cogs.admin import AdminCog
from bot.discord.cogs.canrun import CanrunCog
from bot.discord.cogs.predictions import PredictionsCog, RoundConfidenceSelect, RoundVoteButton
from bot.discord.cogs.record import RecordCog
from bot.discord.cogs.trials import CancelTrialButton, TrialsCog
from bot.discord.reply import NO_MENTIONS
from bot.discord.tree import CanrunTree
from bot.services import predictions as game
from bot.services.capabilities import load_capability_table
from bot.services.checker import Checker, make_checker
from bot.services.game_events import GameEvents
from bot.services.hub import HubUnavailable
from bot.services.model_cache import Lease, ModelCache, ModelCacheFull
from bot.services.model_search import ModelSearch
from bot.services.store import Store
from bot.services.trial_queue import QueueSettings, Trial, TrialAborted, TrialQueue
from bot.services.trial_settings import trial_limits, trial_policy

log = logging.getLogger("bot.discord")
discord.VoiceClient.warn_nacl = False  # canrun never joins voice: no warning about PyNaCl in the owner's log
SYNC_HASH_KEY = "command_sync_hash"


class CanrunBot(commands.Bot):
    store: Store
    checker: Checker
    model_search: ModelSearch

    def __init__(self, config: Config, **options):
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles of the servers it is in; nothing privileged
        super().__init__(
            command_prefix=commands.when_mentioned,  # no prefix commands: slash commands only
            intents=intents,
            tree_cls=CanrunTree,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            **options,
        )
        self.config = config
        self._released: asyncio.Future | None = None

    async def setup_hook(self) -> None:
        self.store = await Store.open(self.config.path(self.config.store.path))
        await self.store.migrate()
        stale = await game.release_stale_locks(self.store)  # no trial runs yet: these outlived a crash
        if stale:
            log.info("reopened predictions locked by trials that died with the last run: %s", ", ".join(stale))
        self.game_events = GameEvents(self.store)
        table = await load_capability_table(self.store)
        self.checker = make_checker(self.config, self.store, table)
        self._warm_up = asyncio.create_task(self.checker.warm_up())  # mlx-lm imported before the first /canrun
        self.model_search = ModelSearch(self.checker.hub, timeout=self.config.discord.autocomplete_timeout_seconds)
        await self.add_cog(CanrunCog(self))
        await self.add_cog(AdminCog(self))
        await self.add_cog(PredictionsCog(self))
        await self.add_cog(RecordCog(self))
        self.add_dynamic_items(RoundVoteButton, RoundConfidenceSelect)
        if self.config.trials.enabled:
            await self._start_trials()
        await self.sync_commands()
        log.info("ready to answer with mlx-lm %s", table.mlx_lm_version)

    async def _start_trials(self) -> None:
        cfg = self.config.trials
        cache_dir = self.config.path(cfg.cache_dir)
        self.model_cache = ModelCache(cache_dir, int(cfg.cache_budget_gb * GB))
        self._leases: dict[int, Lease] = {}  # trial id -> its model's lease, from before_run to after_run
        self.trial_policy = trial_policy(self.config, self.checker.host)
        self.trial_queue = TrialQueue(
            self.store,
            QueueSettings(
                queue_max=cfg.queue_max, per_user_queued=cfg.per_user_queued,
                queued_ttl_seconds=cfg.queued_ttl_hours * 3600,
                limits=trial_limits(self.config),
                endpoint=self.config.hf_endpoint, hf_token=self.config.hf_token, cache_dir=cache_dir,
                warm_worker=cfg.warm_worker,
            ),
            before_run=self._before_trial, after_run=self._after_trial,
        )
        await self.trial_queue.recover()
        self.add_dynamic_items(CancelTrialButton)
        await self.add_cog(TrialsCog(self))
        self.trial_queue.start()

    async def _before_trial(self, trial: Trial) -> None:
        try:
            meta = await self.checker.hub.fetch(trial.repo_id, trial.revision)
        except HubUnavailable as e:
            raise TrialAborted(f"Hugging Face could not be reached ({e})") from e
        try:  # a thread: the cache lock may wait on another process
            lease = await asyncio.to_thread(self.model_cache.reserve, trial.repo_id, meta.weights_bytes or 0)
        except ModelCacheFull as e:
            raise TrialAborted(str(e)) from e
        self._leases[trial.id] = lease
        await self.game_events.trial_starting(trial)

    async def _after_trial(self, trial: Trial) -> None:
        try:
            await self._compare_speed(trial)
            settlement = await self.game_events.trial_ended(trial)
            if settlement is not None:
                await self._announce_settlement(trial, settlement)
        finally:
            await asyncio.to_thread(self.model_cache.after_trial, trial.repo_id, self._leases.pop(trial.id, None),
                                    keep=self.config.trials.keep_after_trial)

    async def _compare_speed(self, trial: Trial) -> None:
        """Keep beside the trial's numbers what canrun predicted for it (shown in its embed)."""
        if trial.status != "succeeded" or self.checker.speed is None:
            return
        try:
            compared = await self.checker.speed.trial_prediction(trial.repo_id, trial.revision, trial.result)
        except Exception:  # noqa: BLE001 - a comparison, never a reason to lose the trial's end
            log.exception("no speed comparison for trial #%s", trial.id)
            return
        if compared is not None:
            trial.result["speed_prediction"] = compared
            async with self.store.transaction() as db:
                await db.execute("UPDATE trials SET result = ? WHERE id = ?", (json.dumps(trial.result), trial.id))

    async def _announce_settlement(self, trial: Trial, settlement: game.Settlement) -> None:
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
            await self.get_partial_messageable(trial.channel_id).send(" ".join(lines), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.warning("could not announce what trial #%s settled", trial.id, exc_info=True)

    def _command_hash(self) -> str:
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands()), key=lambda c: c["name"])
        blob = json.dumps({"commands": payload, "guilds": sorted(self.config.discord.guild_ids)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_commands(self, *, force: bool = False) -> int:
        """Register the commands with Discord, only when they changed (Discord caps daily command creates)."""
        digest = self._command_hash()
        if not force and await self.store.state_get(SYNC_HASH_KEY) == digest:
            log.info("slash commands unchanged since the last sync")
            return 0
        guild_ids = self.config.discord.guild_ids
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        await self.store.state_put(SYNC_HASH_KEY, digest)
        log.info("synced %d slash commands to %s", len(synced), guild_ids or "all servers")
        return len(synced)

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d servers", self.user, self.user.id if self.user else "?", len(self.guilds))

    async def close(self) -> None:
        """Idempotent: a signal and the end of start() may both close; the second waits for the first."""
        await super().close()
        if self._released is None:
            self._released = asyncio.ensure_future(self._release())
        await asyncio.shield(self._released)

    async def _release(self) -> None:
        for name in list(self.cogs):  # their background tasks stop (cog_unload); trials and reveals resume later
            await self.remove_cog(name)
        if hasattr(self, "trial_queue"):
            await self.trial_queue.stop()
        if hasattr(self, "checker"):
            await self.checker.close()
        if hasattr(self, "store"):
            await self.store.close()
        log.info("closed cleanly")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def setup_logging(config: Config) -> None:
    level = getattr(logging, config.logging.level.upper())
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    handlers: list[logging.Handler] = [stderr]
    if config.logging.file:
        path = config.path(config.logging.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = RotatingFileHandler(path, maxBytes=5 * 1024**2, backupCount=3, encoding="utf-8")
        rotating.setFormatter(fmt)
        handlers.append(rotating)
    root.handlers = handlers


def point_at_discord(config: Config) -> None:
    """Use another Discord API base / gateway when configured (discord.py reads both on every use)."""
    if config.discord.api_base:
        discord.http.Route.BASE = config.discord.api_base.rstrip("/")
    if config.discord.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.discord.gateway_url)


async def serve(config: Config, token: str) -> None:
    """Run until closed or signalled; SIGINT/SIGTERM close the bot cleanly (store closed, sessions ended)."""
    point_at_discord(config)
    bot = CanrunBot(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: _shutdown(bot, s))
    try:
        await bot.start(token)
    finally:
        await bot.close()


def _shutdown(bot: CanrunBot, sig: signal.Signals) -> None:
    log.info("%s received: closing", sig.name)
    asyncio.ensure_future(bot.close())


def run_bot(config: Config) -> int:
    setup_logging(config)
    try:
        asyncio.run(serve(config, config.discord_token or ""))
    except discord.LoginFailure:
        print("canrun: Discord rejected DISCORD_TOKEN. Copy the token again from the developer portal "
              "(Bot → Reset Token).", file=sys.stderr)
        return 2
    except discord.PrivilegedIntentsRequired:  # pragma: no cover - canrun asks for none
        print("canrun: Discord refused the intents.", file=sys.stderr)
        return 2
    return 0
