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
from bot.discord.reply import NO_MENTIONS
from bot.discord.tree import CanrunTree
from bot.services.container import Services

log = logging.getLogger("bot.discord")
discord.VoiceClient.warn_nacl = False  # canrun never joins voice: no warning about PyNaCl in the owner's log
SYNC_HASH_KEY = "command_sync_hash"
# Loaded by name (each module ends with `async def setup(bot)`): the bot never imports a cog.
EXTENSIONS = ("bot.discord.cogs.canrun", "bot.discord.cogs.admin", "bot.discord.cogs.predictions",
              "bot.discord.cogs.record")
TRIAL_EXTENSION = "bot.discord.cogs.trials"  # /trial and /trials exist only when [trials] enabled


class CanrunBot(commands.Bot):
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
        self._services: Services | None = None
        self._released: asyncio.Future | None = None

    @property
    def services(self) -> Services:
        """Built in setup_hook, before any cog is loaded."""
        assert self._services is not None, "services are built in setup_hook"
        return self._services

    async def setup_hook(self) -> None:
        self._services = await Services.open(self.config)
        for extension in EXTENSIONS + ((TRIAL_EXTENSION,) if self.config.trials.enabled else ()):
            await self.load_extension(extension)
        self._services.start()
        await self.sync_commands()
        log.info("ready to answer with mlx-lm %s", self._services.checker.table.mlx_lm_version)

    def _command_hash(self) -> str:
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands()), key=lambda c: c["name"])
        # The application too: a new bot application with the same database has no commands yet.
        blob = json.dumps({"commands": payload, "guilds": sorted(self.config.discord.guild_ids),
                           "application": self.application_id}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_commands(self, *, force: bool = False) -> int:
        """Register the commands with Discord, only when they changed (Discord caps daily command creates)."""
        store = self.services.store
        digest = self._command_hash()
        if not force and await store.state_get(SYNC_HASH_KEY) == digest:
            log.info("slash commands unchanged since the last sync")
            return 0
        guild_ids = self.config.discord.guild_ids
        synced, failed = [], []
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                try:
                    synced = await self.tree.sync(guild=guild)
                except discord.HTTPException as e:
                    # A channel's id pasted for the server's, or a server the bot has left: the other servers
                    # still get their commands, and the bot still starts.
                    log.error("could not register the slash commands in server %s (%s): check [discord] guild_ids "
                              "and that the bot is in that server, invited with the applications.commands scope",
                              guild_id, e.text or e.status)
                    failed.append(guild_id)
        else:
            synced = await self.tree.sync()
        if not failed:  # else the next start tries again
            await store.state_put(SYNC_HASH_KEY, digest)
        log.info("synced %d slash commands to %s", len(synced),
                 [g for g in guild_ids if g not in failed] if guild_ids else "all servers")
        return len(synced)

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d servers", self.user, self.user.id if self.user else "?", len(self.guilds))

    async def close(self) -> None:
        """Idempotent: a signal and the end of start() may both close; the second waits for the first.
        discord.py's close unloads the extensions first (their background tasks stop; trials and reveals resume
        at the next start)."""
        await super().close()
        if self._released is None:
            self._released = asyncio.ensure_future(self._release())
        await asyncio.shield(self._released)

    async def _release(self) -> None:
        if self._services is not None:
            await self._services.close()
        log.info("closed cleanly")


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
