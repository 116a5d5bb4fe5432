"""An unmodified discord.py bot against the fake Discord: gateway, slash commands, views, resume."""

from __future__ import annotations

import asyncio
import io
import json
import zlib

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.fake_discord import (
    EPHEMERAL,
    LOADING,
    UNKNOWN_WEBHOOK,
    FakeDiscord,
    patch_discord,
    rate_limited,
)

MODELS = ["llama-3-8b", "llama-3-70b", "qwen2-7b"]


class PanelView(discord.ui.View):
    """A persistent view: a fixed custom_id and no timeout, so clicks are routed after a restart."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.clicks: list[int] = []

    @discord.ui.button(label="Refresh", custom_id="canrun:refresh")
    async def refresh(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.clicks.append(interaction.user.id)
        await interaction.response.edit_message(content=f"refreshed {len(self.clicks)}")


class SampleBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            # on_ready fires this long after the last GUILD_CREATE (default 2 s).
            guild_ready_timeout=0.05,
        )
        self.panel = PanelView()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass  # the default sleeps 5 s before every re-IDENTIFY (Discord's identify rate limit)

    async def setup_hook(self) -> None:
        self.add_view(self.panel)
        self.tree.add_command(echo)
        self.tree.add_command(model)
        self.tree.add_command(panel)
        self.tree.add_command(report)
        self.tree.add_command(fail)
        self.tree.add_command(admin)
        self.tree.on_error = on_app_command_error


@app_commands.command(description="Repeat text in an embed")
async def echo(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.defer()
    embed = discord.Embed(description=text)
    try:
        await interaction.edit_original_response(embed=embed)
    except discord.NotFound:  # the interaction token expired: post in the channel instead
        await interaction.channel.send(embed=embed)


@app_commands.command(description="Pick a model")
async def model(interaction: discord.Interaction, name: str) -> None:
    await interaction.response.send_message(name)


@model.autocomplete("name")
async def model_name(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=m, value=m) for m in MODELS if current in m]


@app_commands.command(description="Show the panel")
async def panel(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("panel", view=interaction.client.panel)


@app_commands.command(description="Send a report file")
async def report(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(file=discord.File(io.BytesIO(b"all good"), "report.txt"))


@app_commands.command(description="Always fails")
async def fail(interaction: discord.Interaction) -> None:
    raise RuntimeError("boom")


admin = app_commands.Group(name="admin", description="Moderation")


@admin.command(description="Warn a member")
async def warn(interaction: discord.Interaction, who: discord.Member, strikes: int) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    await interaction.followup.send(f"{who.display_name}: strike {strikes}")
    await interaction.edit_original_response(content="warned")


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    await interaction.response.send_message(f"Error: {getattr(error, 'original', error)}", ephemeral=True)


@pytest.fixture
async def fake():
    fake = await FakeDiscord().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bot(fake):
    bot = SampleBot()
    with patch_discord(fake):
        await bot.login("fake-token")  # start() = login() + connect(): ready-waiting is valid after login
        task = asyncio.create_task(bot.connect())
        await fake.wait_ready()
        await asyncio.wait_for(bot.wait_until_ready(), 30)
        yield bot
        await bot.close()
        await asyncio.wait_for(task, 30)  # start() returns cleanly once closed
    assert fake.unknown_requests == []


async def test_ready_and_guild_created(fake, bot):
    assert bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.app_id
    assert [g.id for g in bot.guilds] == list(fake.guild_ids)
    channel = bot.get_channel(fake.channel_id)
    assert channel is not None and channel.guild.id == fake.guild_ids[0]
    login = [(r.method, r.path) for r in fake.requests[:2]]
    assert login == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    identify = next(p for p in fake.gateway_connections[0].received if p["op"] == 2)
    assert identify["d"]["token"] == "fake-token"
    assert not identify["d"]["intents"] & (discord.Intents.members.flag | discord.Intents.presences.flag)


async def test_bot_gateway_is_zlib_compressed(fake, bot):
    # The fake compresses whenever asked (test_gateway_frames), so HELLO, READY and GUILD_CREATE
    # reached the bot through the deflate stream.
    assert fake.gateway_connections[0].query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}


async def test_tree_sync_registers_guild_commands(fake, bot):
    guild = discord.Object(fake.guild_ids[0])
    bot.tree.copy_global_to(guild=guild)
    synced = await bot.tree.sync(guild=guild)

    registered = {c["name"]: c for c in fake.registered_commands(guild.id)}
    assert {c.name: c.id for c in synced} == {name: int(c["id"]) for name, c in registered.items()}
    [text] = registered["echo"]["options"]
    assert (text["name"], text["type"], text["required"]) == ("text", 3, True)
    assert fake.registered_commands() == []

    interaction = await fake.send_slash_command("echo", {"text": "synced"})
    assert interaction.payload["data"]["guild_id"] == str(guild.id)
    assert interaction.payload["data"]["id"] == registered["echo"]["id"]
    await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")


async def test_slash_command_defers_then_edits_original(fake, bot):
    interaction = await fake.send_slash_command("echo", {"text": "hello"})
    edit = await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")

    callback, patch = fake.interaction_responses(interaction.id)
    assert callback.path.endswith("/callback") and callback.query == {"with_response": "1"}
    assert callback.json == {"type": 5}
    assert patch is edit
    assert edit.json["embeds"][0]["description"] == "hello"
    assert edit.json["allowed_mentions"] == {"parse": []}
    message = fake.messages[fake.interactions[interaction.id].original_message_id]
    assert message["embeds"][0]["description"] == "hello"
    assert not message["flags"] & LOADING


async def test_expired_token_falls_back_to_channel(fake, bot):
    fake.fail_route("PATCH", "/messages/@original", 404, UNKNOWN_WEBHOOK)
    await fake.send_slash_command("echo", {"text": "late"})
    sent = await fake.wait_for_request("POST", f"/channels/{fake.channel_id}/messages")
    assert sent.json["embeds"][0]["description"] == "late"
    assert fake.messages[max(fake.messages)]["embeds"][0]["description"] == "late"


async def test_rate_limited_callback_is_retried(fake, bot):
    fake.fail_route("POST", "/callback", 429, rate_limited(0.05))
    interaction = await fake.send_slash_command("model", {"name": "qwen2-7b"})
    await fake.wait_for_request("POST", "/callback", predicate=lambda r: r.status == 200)
    assert [r.status for r in fake.interaction_responses(interaction.id)] == [429, 200]


async def test_autocomplete_returns_choices(fake, bot):
    interaction = await fake.send_autocomplete("model", {"name": "llama"}, focused="name")
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    choices = [{"name": m, "value": m} for m in ("llama-3-8b", "llama-3-70b")]
    assert callback.json == {"type": 8, "data": {"choices": choices}}


async def test_button_click_reaches_view(fake, bot):
    shown = await fake.send_slash_command("panel")
    await fake.wait_for_request("POST", f"/interactions/{shown.id}/")
    panel_id = fake.interactions[shown.id].original_message_id

    clicker = fake.make_user(name="clicker")
    click = await fake.send_component("canrun:refresh", user=clicker)
    callback = await fake.wait_for_request("POST", f"/interactions/{click.id}/")

    assert click.payload["message"]["id"] == str(panel_id)
    assert bot.panel.clicks == [int(clicker["user"]["id"])]
    assert callback.json["type"] == 7
    assert fake.messages[panel_id]["content"] == "refreshed 1"


async def test_subcommand_with_member_option_and_followup(fake, bot):
    await bot.tree.sync()
    target = fake.make_user(name="spammer")
    interaction = await fake.send_slash_command("admin", {"who": target, "strikes": 2}, subcommand="warn")
    await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")

    [option] = interaction.payload["data"]["options"]
    assert (option["name"], option["type"]) == ("warn", 1)
    assert [(o["name"], o["type"]) for o in option["options"]] == [("who", 6), ("strikes", 4)]
    callback, followup, edit = fake.interaction_responses(interaction.id)
    assert callback.json == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert followup.query["wait"] == "1" and followup.json["content"] == "spammer: strike 2"
    original = fake.messages[fake.interactions[interaction.id].original_message_id]
    assert (original["content"], original["flags"]) == ("warned", EPHEMERAL)


async def test_error_reply_is_ephemeral(fake, bot):
    interaction = await fake.send_slash_command("fail")
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    assert callback.json["type"] == 4
    assert callback.json["data"]["content"] == "Error: boom"
    assert callback.json["data"]["flags"] == EPHEMERAL
    assert fake.messages[fake.interactions[interaction.id].original_message_id]["flags"] == EPHEMERAL


async def test_file_upload_is_parsed(fake, bot):
    interaction = await fake.send_slash_command("report")
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    assert [(f.field, f.filename, f.data) for f in callback.files] == [("files[0]", "report.txt", b"all good")]
    message = fake.messages[fake.interactions[interaction.id].original_message_id]
    assert [(a["filename"], a["size"]) for a in message["attachments"]] == [("report.txt", 8)]


async def test_resume_after_disconnect(fake, bot):
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)
    await fake.disconnect_gateway(4000)
    # Dispatched while the bot is away: replayed when it resumes.
    interaction = await fake.send_slash_command("echo", {"text": "after resume"})

    await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
    await asyncio.wait_for(resumed.wait(), 30)
    _, second = fake.gateway_connections
    assert second.path.endswith("/resume")  # the resume_gateway_url from READY
    assert [p["op"] for p in second.received if p["op"] != 1] == [6]  # RESUME, no new IDENTIFY


async def test_invalid_session_reidentifies(fake, bot):
    await fake.disconnect_gateway(None, resumable=False)
    await fake.wait_ready()
    interaction = await fake.send_slash_command("echo", {"text": "new session"})
    await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
    ops = [p["op"] for conn in fake.gateway_connections[1:] for p in conn.received if p["op"] != 1]
    assert ops == [6, 2]  # RESUME refused with INVALID_SESSION, then IDENTIFY


async def test_clean_shutdown(fake):
    bot = SampleBot()
    with patch_discord(fake):
        task = asyncio.create_task(bot.start("fake-token"))
        await fake.wait_ready()
        await bot.close()
        await asyncio.wait_for(task, 30)
    assert bot.is_closed()
    assert fake.gateway_connections[-1].ws.closed
    assert discord.http.Route.BASE == "https://discord.com/api/v10"


async def test_gateway_frames(fake):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream") as ws:
            inflate = zlib.decompressobj()
            hello = await ws.receive()
            assert hello.type is aiohttp.WSMsgType.BINARY and hello.data.endswith(b"\x00\x00\xff\xff")
            assert json.loads(inflate.decompress(hello.data))["op"] == 10
            await ws.send_str(json.dumps({"op": 1, "d": None}))
            ack = await ws.receive()  # same deflate stream: only decodable with the context of HELLO
            assert json.loads(inflate.decompress(ack.data))["op"] == 11

        async with session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json") as ws:
            hello = await ws.receive()
            assert hello.type is aiohttp.WSMsgType.TEXT and json.loads(hello.data)["op"] == 10

        async with session.get(f"{fake.url}/api/v10/nope") as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
            assert await response.json() == {"message": "Unknown", "code": 0}
    assert [r.path for r in fake.unknown_requests] == ["/nope"]
