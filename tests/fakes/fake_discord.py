"""A fake Discord: gateway websocket and REST API on 127.0.0.1 for an unmodified discord.py 2.7 bot.

    fake = await FakeDiscord().start()
    with patch_discord(fake):
        task = asyncio.create_task(bot.start("fake-token"))
        await fake.wait_ready()
        interaction = await fake.send_slash_command("echo", {"text": "hi"})
        await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
        await bot.close()
    await fake.stop()

The server runs in the caller's event loop. Every REST request is recorded (`requests`), every
message the bot creates is kept in its latest state (`messages`), and every gateway payload the
bot sends is kept per connection (`gateway_connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import Any

import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, hdrs, web

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway-ws"
# READY hands out a different URL, as Discord does, so tests can see that a reconnect really resumed.
RESUME_GATEWAY_PATH = "/gateway-ws/resume"
DISCORD_EPOCH_MS = 1420070400000

# Gateway opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 9, 10, 11
# Interaction types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
# Interaction callback types.
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE = 4, 5, 6, 7
# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, USER = 1, 2, 6
# Message flags.
EPHEMERAL, LOADING = 1 << 6, 1 << 7

# View channel, send messages, embed links, attach files, read history, use application commands:
# what a member and the bot need to chat and run slash commands.
CHAT_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)

# Option types used when the command schema is unknown; dict is a member from make_user().
_PY_OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10, dict: USER}

# Error bodies for fail_route().
UNKNOWN_INTERACTION = {"message": "Unknown interaction", "code": 10062}
UNKNOWN_WEBHOOK = {"message": "Unknown Webhook", "code": 10015}


def rate_limited(retry_after: float = 0.05, *, is_global: bool = False) -> dict:
    """A 429 body for fail_route(); discord.py sleeps `retry_after` seconds and retries."""
    return {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global, "code": 0}


@dataclass(frozen=True)
class RecordedFile:
    field: str  # "files[0]", "files[1]", ...
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    method: str
    path: str  # relative to /api/v10, e.g. "/users/@me"
    query: dict[str, str]
    json: Any  # the JSON body, or the parsed payload_json of a multipart body
    files: list[RecordedFile]
    status: int = 0
    unknown_route: bool = False
    at: float = field(default_factory=time.monotonic)  # when it arrived (for benchmarks)


_RECORD = web.RequestKey("record", RecordedRequest)


@dataclass
class FakeInteraction:
    id: int
    token: str
    type: int
    payload: dict  # the INTERACTION_CREATE data as dispatched
    callback_type: int | None = None
    original_message_id: int | None = None
    message_ids: list[int] = field(default_factory=list)  # messages editable through this token


class GatewayConnection:
    """One websocket the bot opened, with everything it sent on it."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, *, zlib_stream: bool) -> None:
        self.ws = ws
        self.path = request.path
        self.query = dict(request.query)
        self.received: list[dict] = []
        self._transport = request.transport
        # zlib-stream is one deflate stream per connection; every payload is flushed with Z_SYNC_FLUSH
        # so the frame ends in 00 00 ff ff, which is how discord.py knows a payload is complete.
        self._deflate = zlib.compressobj() if zlib_stream else None
        # Frames must go out in the order they were compressed.
        self._send_lock = asyncio.Lock()

    async def send(self, payload: dict) -> None:
        text = json.dumps(payload)
        async with self._send_lock:
            if self._deflate is None:
                await self.ws.send_str(text)
            else:
                data = self._deflate.compress(text.encode()) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, like a network failure."""
        if self._transport is not None:
            self._transport.close()


@dataclass
class _Session:
    id: str
    # Every dispatch of the session; payload "s" == index + 1, so RESUME can replay from the bot's seq.
    log: list[dict] = field(default_factory=list)
    ready: bool = False


@dataclass
class _Failure:
    method: str
    path_contains: str
    status: int
    body: dict
    remaining: int


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py decodes a body only if Content-Type is exactly "application/json";
    # aiohttp's json_response() would append "; charset=utf-8".
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _has_custom_id(node: Any, custom_id: str) -> bool:
    """Whether a component tree (rows, containers, sections...) holds a component with this custom_id."""
    if isinstance(node, dict):
        return node.get("custom_id") == custom_id or any(_has_custom_id(v, custom_id) for v in node.values())
    if isinstance(node, list):
        return any(_has_custom_id(v, custom_id) for v in node)
    return False


async def _read_request(request: web.Request) -> RecordedRequest:
    body: Any = None
    files: list[RecordedFile] = []
    if request.content_type == "multipart/form-data":
        async for part in await request.multipart():
            data = bytes(await part.read())
            if part.name == "payload_json":
                body = json.loads(data)
            else:
                content_type = part.headers.get(hdrs.CONTENT_TYPE, "")
                files.append(RecordedFile(part.name or "", part.filename or "", content_type, data))
    elif request.body_exists:
        raw = await request.read()
        body = json.loads(raw) if request.content_type == "application/json" else raw.decode()
    path = request.path.removeprefix(API_PREFIX)
    return RecordedRequest(request.method, path, dict(request.query), body, files)


@contextlib.contextmanager
def patch_discord(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST and gateway URLs at the fake; restores them on exit.

    A plain context manager, so it works in sync and async fixtures alike. Keep it open while the
    bot runs: discord.py reads Route.BASE on every request and DEFAULT_GATEWAY on every (re)connect.
    """
    route, gateway = discord.http.Route, discord.gateway.DiscordWebSocket
    saved = route.BASE, gateway.DEFAULT_GATEWAY
    route.BASE = f"{fake.url}{API_PREFIX}"
    gateway.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        route.BASE, gateway.DEFAULT_GATEWAY = saved


class FakeDiscord:
    def __init__(
        self,
        *,
        guild_ids: Iterable[int] = (111111111111111111,),
        channel_id: int = 222222222222222222,
        app_id: int = 333333333333333333,
        bot_user_id: int | None = None,
        roles: Mapping[int, str] | None = None,
    ) -> None:
        """One text channel per guild (`channel_id` in the first one); `roles` exist in every guild."""
        self.guild_ids = tuple(guild_ids)
        self.channel_id = channel_id
        self.app_id = app_id
        self.bot_user_id = bot_user_id or app_id  # Discord gives a bot's user the application's id
        self.roles = dict(roles or {})
        self.url = ""
        self.gateway_url = ""
        self.requests: list[RecordedRequest] = []
        self.messages: dict[int, dict] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.gateway_connections: list[GatewayConnection] = []
        self.bot_user = {
            "id": str(self.bot_user_id), "username": "canrun", "discriminator": "0",
            "global_name": None, "avatar": None, "bot": True,
        }  # fmt: skip
        self._last_id = 0
        self.default_user = self.make_user(name="learner")
        self.owner = self.make_user(name="owner")  # owns the application (bot.is_owner)
        self.channels: dict[int, dict] = {}
        for index, guild_id in enumerate(self.guild_ids):
            new_id = channel_id if index == 0 else self._next_id()
            self.channels[new_id] = {
                "id": str(new_id), "type": 0, "guild_id": str(guild_id), "name": "general", "position": 0,
                "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
            }  # fmt: skip
        self._commands: dict[int | None, list[dict]] = {}  # guild id (None: global) -> registered commands
        self._failures: list[_Failure] = []
        self._session: _Session | None = None
        self._live: GatewayConnection | None = None  # the connection dispatches go to; None while reconnecting
        self._changed = asyncio.Condition()  # notified when a request is recorded or the bot gets ready
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(GATEWAY_PATH, self._gateway)
        app.router.add_get(RESUME_GATEWAY_PATH, self._gateway)
        for method, path, handler in self._rest_routes():
            app.router.add_route(method, API_PREFIX + path, handler)
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self._port}"
        self.gateway_url = f"ws://127.0.0.1:{self._port}{GATEWAY_PATH}"
        return self

    async def stop(self) -> None:
        """Shut the server down; close the bot first, or it keeps trying to reconnect."""
        for conn in self.gateway_connections:
            if not conn.ws.closed:
                await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test API --------------------------------------------------------------------------------

    async def wait_for_request(
        self,
        method: str,
        path_contains: str,
        *,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 30.0,  # generous: a loaded machine (CI runs suites side by side) is slow, not wrong
    ) -> RecordedRequest:
        """The first recorded request (already received or still to come) that matches.

        Requests are recorded once handled: the fake's state already reflects the one returned.
        """

        def find() -> RecordedRequest | None:
            return next(
                (
                    r
                    for r in self.requests
                    if r.method == method.upper() and path_contains in r.path and (predicate is None or predicate(r))
                ),
                None,
            )

        return await self._wait(find, timeout, f"{method} ...{path_contains}...")

    async def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the bot identified and was sent READY and every GUILD_CREATE."""
        await self._wait(lambda: self._session is not None and self._session.ready, timeout, "READY")

    def make_user(
        self,
        user_id: int | None = None,
        name: str = "learner",
        roles: Iterable[int] = (),
        *,
        permissions: int = CHAT_PERMISSIONS,
    ) -> dict:
        """A guild member payload (the user is under "user"), to pass as `user=` or as a user option."""
        user_id = user_id or self._next_id()
        return {
            "user": {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None},
            "roles": [str(role) for role in roles],
            "joined_at": _now(), "flags": 0, "deaf": False, "mute": False, "permissions": str(permissions),
        }  # fmt: skip

    async def send_slash_command(
        self,
        name: str,
        options: dict | list | None = None,
        *,
        user: dict | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        subcommand: str | None = None,
        command_id: int | None = None,
    ) -> FakeInteraction:
        """Dispatch a slash command. `options` maps names to values (typed from the registered schema,
        else from the Python type) or is a raw option list; `subcommand` is "sub" or "group sub"."""
        channel = self._channel(guild_id, channel_id)
        data = self._command_data(name, options, channel, subcommand, command_id)
        return await self._send_interaction(APPLICATION_COMMAND, data, channel, user)

    async def send_autocomplete(
        self,
        name: str,
        options: dict | list | None,
        focused: str,
        *,
        user: dict | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        subcommand: str | None = None,
        command_id: int | None = None,
    ) -> FakeInteraction:
        """Dispatch an autocomplete request for option `focused` (Discord sends what was typed so far)."""
        channel = self._channel(guild_id, channel_id)
        data = self._command_data(name, options, channel, subcommand, command_id, focused=focused)
        return await self._send_interaction(AUTOCOMPLETE, data, channel, user)

    async def send_component(
        self,
        custom_id: str,
        *,
        component_type: int = 2,
        values: Iterable[str] | None = None,
        message: dict | int | None = None,
        user: dict | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> FakeInteraction:
        """Click a button (or pick select `values`) on `message`: a message id or payload, by default
        the latest stored message holding `custom_id`, else a new bot message carrying it (as a
        persistent view posted before this run would be)."""
        attached = self._component_message(custom_id, component_type, message, self._channel(guild_id, channel_id))
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        channel = self.channels[int(attached["channel_id"])]
        return await self._send_interaction(MESSAGE_COMPONENT, data, channel, user, message=attached)

    async def send_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: dict | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> FakeInteraction:
        """Submit the modal `custom_id` with text input values keyed by their custom_id."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        data = {"custom_id": custom_id, "components": rows}
        return await self._send_interaction(MODAL_SUBMIT, data, self._channel(guild_id, channel_id), user)

    def interaction_responses(self, interaction_id: int) -> list[RecordedRequest]:
        """The callback, then webhook requests (original response edits, followups) for its token, in order."""
        token = self.interactions[interaction_id].token
        prefixes = (f"/interactions/{interaction_id}/{token}/", f"/webhooks/{self.app_id}/{token}")
        return [r for r in self.requests if r.path.startswith(prefixes)]

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        """Requests to routes the fake does not serve (answered 404, code 0)."""
        return [r for r in self.requests if r.unknown_route]

    def registered_commands(self, guild_id: int | None = None) -> list[dict]:
        return list(self._commands.get(guild_id, []))

    def fail_route(
        self, method: str, path_contains: str, status: int, body: dict | None = None, count: int = 1
    ) -> None:
        """Answer the next `count` matching requests with `status` and `body` instead of serving them,
        e.g. (404, UNKNOWN_WEBHOOK) for an expired token or (429, rate_limited(0.1))."""
        body = body or {"message": "Injected failure", "code": 0}
        self._failures.append(_Failure(method.upper(), path_contains, status, body, count))

    async def disconnect_gateway(self, code: int | None = 4000, *, resumable: bool = True) -> None:
        """Close the bot's gateway connection with `code` (None: drop TCP without a close frame).

        The bot reconnects and RESUMEs: events dispatched meanwhile are replayed, then RESUMED.
        With resumable=False the session is forgotten, so the RESUME gets INVALID_SESSION and the
        bot identifies again (wait_ready() waits for that new READY).
        """
        conn, self._live = self._live, None
        if conn is None:
            raise RuntimeError("the bot has no live gateway connection")
        if not resumable:
            self._session = None
        if code is None:
            conn.abort()
        else:
            await conn.ws.close(code=code)

    # -- gateway ---------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            return _json({"message": f"the fake gateway does not speak compress={compress}", "code": 0}, 400)
        # No permessage-deflate: with zlib-stream the payloads are compressed by the protocol itself.
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        conn = GatewayConnection(ws, request, zlib_stream=compress == "zlib-stream")
        self.gateway_connections.append(conn)
        await conn.send({"op": HELLO, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:  # discord.py sends JSON text only: this is a broken socket
                break
            payload = json.loads(msg.data)
            conn.received.append(payload)
            await self._on_gateway_payload(conn, payload)
        if self._live is conn:
            self._live = None
        return ws

    async def _on_gateway_payload(self, conn: GatewayConnection, payload: dict) -> None:
        op = payload["op"]
        if op == HEARTBEAT:
            await conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(conn)
        elif op == RESUME:
            await self._resume(conn, payload["d"])
        # Other ops (presence updates, member chunk requests) are only recorded.

    async def _identify(self, conn: GatewayConnection) -> None:
        self._session = session = _Session(id=uuid.uuid4().hex)
        self._live = conn
        await self._dispatch(
            "READY",
            {
                "v": 10,
                "user": self.bot_user,
                "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in self.guild_ids],
                "session_id": session.id,
                "resume_gateway_url": f"ws://127.0.0.1:{self._port}{RESUME_GATEWAY_PATH}",
                "application": {"id": str(self.app_id), "flags": 0},
            },
        )
        for guild_id in self.guild_ids:
            await self._dispatch("GUILD_CREATE", self._guild_payload(guild_id))
        session.ready = True
        async with self._changed:
            self._changed.notify_all()

    async def _resume(self, conn: GatewayConnection, data: dict) -> None:
        session = self._session
        if session is None or data["session_id"] != session.id:
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        # Replay what the bot missed. Dispatches made during the replay land in the log (we are not
        # live yet), so the loop sends them too; going live right after it leaves no gap.
        next_index = data["seq"] or 0
        while next_index < len(session.log):
            await conn.send(session.log[next_index])
            next_index += 1
        self._live = conn
        await self._dispatch("RESUMED", {})

    async def _dispatch(self, event: str, data: dict) -> None:
        session = self._session
        if session is None:
            raise RuntimeError("the bot has no gateway session; await wait_ready() first")
        payload = {"op": DISPATCH, "t": event, "s": len(session.log) + 1, "d": data}
        session.log.append(payload)
        if self._live is not None:
            # If the bot just dropped the socket, it gets the event from the log when it resumes.
            with contextlib.suppress(ConnectionResetError):
                await self._live.send(payload)

    def _guild_payload(self, guild_id: int) -> dict:
        everyone = {"id": str(guild_id), "name": "@everyone", "permissions": str(CHAT_PERMISSIONS), "position": 0}
        roles = [
            {"id": str(role_id), "name": name, "permissions": "0", "position": position}
            for position, (role_id, name) in enumerate(self.roles.items(), start=1)
        ]
        bot_member = {"user": self.bot_user, "roles": [], "joined_at": _now(), "flags": 0, "deaf": False, "mute": False}
        return {
            "id": str(guild_id), "name": f"guild {guild_id}", "owner_id": self.owner["user"]["id"],
            "unavailable": False, "large": False, "member_count": 1, "joined_at": _now(), "preferred_locale": "en-US",
            "features": [], "emojis": [], "stickers": [], "roles": [everyone, *roles],
            "channels": [c for c in self.channels.values() if c["guild_id"] == str(guild_id)],
            "members": [bot_member], "voice_states": [], "presences": [], "threads": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }  # fmt: skip

    # -- interactions ----------------------------------------------------------------------------

    def _channel(self, guild_id: int | None, channel_id: int | None) -> dict:
        if channel_id is not None:
            return self.channels[channel_id]
        guild = str(guild_id or self.guild_ids[0])
        return next(c for c in self.channels.values() if c["guild_id"] == guild)

    def _find_command(self, name: str, guild_id: int) -> dict | None:
        for registered in (self._commands.get(guild_id, []), self._commands.get(None, [])):
            for command in registered:
                if command["name"] == name and command["type"] == 1:
                    return command
        return None

    def _command_data(
        self,
        name: str,
        options: dict | list | None,
        channel: dict,
        subcommand: str | None,
        command_id: int | None,
        focused: str | None = None,
    ) -> dict:
        command = self._find_command(name, int(channel["guild_id"]))
        schema = command.get("options", []) if command else []
        path = subcommand.split() if subcommand else []
        for part in path:
            schema = next((o.get("options", []) for o in schema if o["name"] == part), [])
        resolved: dict[str, dict] = {"users": {}, "members": {}}
        leaf = options if isinstance(options, list) else self._options(options or {}, schema, focused, resolved)
        for depth in reversed(range(len(path))):
            kind = SUB_COMMAND if depth == len(path) - 1 else SUB_COMMAND_GROUP
            leaf = [{"name": path[depth], "type": kind, "options": leaf}]
        if command_id is None:
            command_id = int(command["id"]) if command else self._next_id()
        data = {"id": str(command_id), "name": name, "type": 1, "options": leaf, "resolved": resolved}
        # discord.py looks the command up among the tree's guild commands only when guild_id is set.
        if command and "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return data

    @staticmethod
    def _options(values: Mapping[str, Any], schema: list[dict], focused: str | None, resolved: dict) -> list[dict]:
        declared = {o["name"]: o["type"] for o in schema}
        options = []
        for name, value in values.items():
            option_type = declared.get(name) or _PY_OPTION_TYPES.get(type(value))
            if option_type is None:
                raise TypeError(f"option {name!r}: pass a raw option list for {type(value).__name__} values")
            if option_type == USER and isinstance(value, dict):
                # A member from make_user(): Discord sends the id and puts the objects in "resolved".
                user_id = value["user"]["id"]
                resolved["users"][user_id] = value["user"]
                resolved["members"][user_id] = {k: v for k, v in value.items() if k != "user"}
                value = user_id
            option = {"name": name, "type": option_type, "value": value}
            if name == focused:
                option["focused"] = True
            options.append(option)
        return options

    def _component_message(
        self, custom_id: str, component_type: int, message: dict | int | None, channel: dict
    ) -> dict:
        if isinstance(message, int):
            return self.messages[message]
        if isinstance(message, dict):
            return self.messages.setdefault(int(message["id"]), message)
        for stored in reversed(self.messages.values()):
            if _has_custom_id(stored["components"], custom_id):
                return stored
        component: dict[str, Any] = {"type": component_type, "custom_id": custom_id}
        if component_type == 2:
            component |= {"style": 1, "label": custom_id}
        return self._new_message(int(channel["id"]), {"components": [{"type": 1, "components": [component]}]}, [])

    async def _send_interaction(
        self, type_: int, data: dict, channel: dict, user: dict | None, *, message: dict | None = None
    ) -> FakeInteraction:
        interaction_id = self._next_id()
        guild_id = channel["guild_id"]
        payload = {
            "id": str(interaction_id), "application_id": str(self.app_id), "type": type_, "data": data,
            "guild_id": guild_id, "guild": {"id": guild_id, "locale": "en-US", "features": []},
            "channel_id": channel["id"], "channel": channel, "member": user or self.default_user,
            "token": f"fake-interaction-token-{interaction_id}", "version": 1,
            "app_permissions": str(CHAT_PERMISSIONS), "locale": "en-US", "guild_locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": guild_id}, "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,  # discord.py requires it
        }  # fmt: skip
        if message is not None:
            payload["message"] = message
        interaction = FakeInteraction(interaction_id, payload["token"], type_, payload)
        self.interactions[interaction_id] = interaction
        await self._dispatch("INTERACTION_CREATE", payload)
        return interaction

    # -- REST ------------------------------------------------------------------------------------

    def _rest_routes(self) -> list[tuple[str, str, Callable]]:
        webhook_message = "/webhooks/{app}/{token}/messages/{message_id}"
        return [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway),
            ("GET", "/applications/{app}/commands", self._get_commands),
            ("PUT", "/applications/{app}/commands", self._put_commands),
            ("GET", "/applications/{app}/guilds/{guild}/commands", self._get_commands),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._put_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("GET", webhook_message, self._get_webhook_message),
            ("PATCH", webhook_message, self._edit_webhook_message),
            ("DELETE", webhook_message, self._delete_webhook_message),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/messages", self._create_channel_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message),
        ]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path in (GATEWAY_PATH, RESUME_GATEWAY_PATH):
            return await handler(request)
        record = request[_RECORD] = await _read_request(request)
        response = self._take_failure(record) or await self._serve(request, handler)
        record.status = response.status
        # Recorded once handled, so a waiter sees the fake's state (messages, commands) updated.
        self.requests.append(record)
        async with self._changed:
            self._changed.notify_all()
        return response

    @staticmethod
    async def _serve(request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            return await handler(request)
        except _ApiError as error:
            return _json({"message": str(error), "code": error.code}, error.status)
        except Exception as error:
            # A bug in the fake. Not a 500: discord.py retries those for ~25 s, hiding the bug behind a timeout.
            _log.exception("fake Discord failed on %s %s", request.method, request.path)
            return _json({"message": f"fake Discord failed: {error!r}", "code": 0}, 400)

    def _take_failure(self, record: RecordedRequest) -> web.Response | None:
        for failure in self._failures:
            if failure.remaining and failure.method == record.method and failure.path_contains in record.path:
                failure.remaining -= 1
                # discord.py takes a 429 without a Via header for a Cloudflare ban and gives up.
                headers = {"Via": "1.1 google"} if failure.status == 429 else None
                return _json(failure.body, failure.status, headers)
        return None

    async def _unknown_route(self, request: web.Request) -> web.Response:
        request[_RECORD].unknown_route = True
        return _json({"message": "Unknown", "code": 0}, 404)

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _get_application(self, request: web.Request) -> web.Response:
        return _json({
            "id": str(self.app_id), "name": "canrun", "description": "", "icon": None, "flags": 0,
            "bot_public": False, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": self.owner["user"], "bot": self.bot_user,
        })  # fmt: skip

    async def _get_gateway(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_commands(self, request: web.Request) -> web.Response:
        guild = request.match_info.get("guild")
        return _json(self.registered_commands(int(guild) if guild else None))

    async def _put_commands(self, request: web.Request) -> web.Response:
        guild = request.match_info.get("guild")
        guild_id = int(guild) if guild else None
        # Like Discord's bulk overwrite: a command keeps its id while its name and type stay the same.
        old_ids = {(c["name"], c["type"]): c["id"] for c in self._commands.get(guild_id, [])}
        stored = []
        for command in request[_RECORD].json:
            kind = command.get("type", 1)
            stored.append({
                "description": "", **command, "type": kind,
                "id": old_ids.get((command["name"], kind)) or str(self._next_id()),
                "application_id": str(self.app_id), "version": str(self._next_id()),
                **({"guild_id": str(guild_id)} if guild_id else {}),
            })  # fmt: skip
        self._commands[guild_id] = stored
        return _json(stored)

    def _interaction_for(self, token: str, error: _ApiError) -> FakeInteraction:
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if interaction is None:
            raise error
        return interaction

    async def _callback(self, request: web.Request) -> web.Response:
        unknown = _ApiError(404, 10062, "Unknown interaction")
        interaction = self._interaction_for(request.match_info["token"], unknown)
        if interaction.callback_type is not None:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        record = request[_RECORD]
        callback_type, data = record.json["type"], record.json.get("data") or {}
        interaction.callback_type = callback_type
        channel_id = int(interaction.payload["channel_id"])
        message = None
        if callback_type == CHANNEL_MESSAGE:
            message = self._new_message(channel_id, data, record.files, webhook=True)
        elif callback_type == DEFERRED_CHANNEL_MESSAGE:
            # The "thinking..." placeholder: edits of @original replace it.
            message = self._new_message(channel_id, {"flags": data.get("flags", 0) | LOADING}, [], webhook=True)
        elif callback_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            message = self.messages[int(interaction.payload["message"]["id"])]
            if callback_type == UPDATE_MESSAGE:
                self._edit_message(message, data, record.files)
        # discord.py reads this callback response (it asks with_response=1); for a message it uses
        # response_message_id, e.g. to route the clicks of a view sent with the response.
        response: dict[str, Any] = {"interaction": {"id": str(interaction.id), "type": interaction.type}}
        if message is not None:
            interaction.original_message_id = int(message["id"])
            interaction.message_ids.append(interaction.original_message_id)
            response["interaction"] |= {
                "response_message_id": message["id"],
                "response_message_loading": callback_type == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(message["flags"] & EPHEMERAL),
            }
            response["resource"] = {"type": callback_type, "message": message}
        return _json(response)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        record = request[_RECORD]
        channel_id = int(interaction.payload["channel_id"])
        message = self._new_message(channel_id, record.json or {}, record.files, webhook=True)
        interaction.message_ids.append(int(message["id"]))
        # Without ?wait=1 Discord answers 204 and the message is not returned.
        return _json(message) if request.query.get("wait") in ("1", "true", "True") else web.Response(status=204)

    def _webhook_interaction(self, request: web.Request) -> FakeInteraction:
        unknown_webhook = _ApiError(404, 10015, "Unknown Webhook")
        interaction = self._interaction_for(request.match_info["token"], unknown_webhook)
        if interaction.callback_type is None:  # the webhook exists only once the interaction is acknowledged
            raise unknown_webhook
        return interaction

    def _webhook_message(self, request: web.Request) -> dict:
        interaction = self._webhook_interaction(request)
        ref = request.match_info["message_id"]
        message_id = interaction.original_message_id if ref == "@original" else int(ref)
        if message_id not in interaction.message_ids or message_id not in self.messages:
            raise _ApiError(404, 10008, "Unknown Message")
        return self.messages[message_id]

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        return _json(self._webhook_message(request))

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        message = self._webhook_message(request)
        self._edit_message(message, request[_RECORD].json or {}, request[_RECORD].files)
        return _json(message)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        del self.messages[int(self._webhook_message(request)["id"])]
        return web.Response(status=204)

    def _request_channel(self, request: web.Request) -> dict:
        channel = self.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        return channel

    def _channel_message(self, request: web.Request) -> dict:
        channel = self._request_channel(request)
        message = self.messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != channel["id"]:
            raise _ApiError(404, 10008, "Unknown Message")
        return message

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(self._request_channel(request))

    async def _create_channel_message(self, request: web.Request) -> web.Response:
        channel = self._request_channel(request)
        record = request[_RECORD]
        return _json(self._new_message(int(channel["id"]), record.json or {}, record.files))

    async def _get_channel_message(self, request: web.Request) -> web.Response:
        return _json(self._channel_message(request))

    async def _edit_channel_message(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        self._edit_message(message, request[_RECORD].json or {}, request[_RECORD].files)
        return _json(message)

    # -- messages --------------------------------------------------------------------------------

    def _new_message(self, channel_id: int, body: dict, files: list[RecordedFile], *, webhook: bool = False) -> dict:
        message_id = self._next_id()
        message = {
            "id": str(message_id), "channel_id": str(channel_id), "guild_id": self.channels[channel_id]["guild_id"],
            "author": self.bot_user, "type": 0, "content": "", "embeds": [], "components": [], "attachments": [],
            "mentions": [], "mention_roles": [], "mention_everyone": False, "pinned": False, "tts": False,
            "flags": body.get("flags", 0), "timestamp": _now(), "edited_timestamp": None,
        }  # fmt: skip
        if webhook:  # interaction responses and followups are sent through the application's webhook
            message |= {"webhook_id": str(self.app_id), "application_id": str(self.app_id)}
        self._apply(message, body, files)
        self.messages[message_id] = message
        return message

    def _edit_message(self, message: dict, body: dict, files: list[RecordedFile]) -> None:
        self._apply(message, body, files)
        # Editing a deferred response replaces the "thinking..." placeholder; other flags can only be added.
        message["flags"] = (message["flags"] & ~LOADING) | body.get("flags", 0)
        message["edited_timestamp"] = _now()

    def _apply(self, message: dict, body: dict, files: list[RecordedFile]) -> None:
        cleared = {"content": "", "embeds": [], "components": [], "tts": False}
        for key, empty in cleared.items():
            if key in body:  # discord.py sends None to clear a field
                message[key] = empty if body[key] is None else body[key]
        if "attachments" in body:
            # New uploads are listed by their files[n] index, kept attachments by their id.
            uploads = {f.field: f for f in files}
            attachments = []
            for entry in body["attachments"]:
                upload = uploads.get(f"files[{entry['id']}]")
                if upload is None:
                    attachments += [a for a in message["attachments"] if a["id"] == str(entry["id"])]
                else:
                    attachment_id = self._next_id()
                    url = f"{self.url}/attachments/{message['channel_id']}/{attachment_id}/{upload.filename}"
                    attachments.append({
                        "id": str(attachment_id), "filename": entry.get("filename", upload.filename),
                        "size": len(upload.data), "url": url, "proxy_url": url, "content_type": upload.content_type,
                    })  # fmt: skip
            message["attachments"] = attachments

    # -- helpers ---------------------------------------------------------------------------------

    def _next_id(self) -> int:
        # A current snowflake (discord.py times interactions out 15 minutes after the id's timestamp),
        # strictly increasing so ids are unique and ordered like Discord's.
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, now)
        return self._last_id

    async def _wait(self, find: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            async with self._changed:
                return await asyncio.wait_for(self._changed.wait_for(find), timeout)
        except TimeoutError:
            seen = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests)
            raise TimeoutError(f"no {what} within {timeout}s; requests so far: {seen or 'none'}") from None
