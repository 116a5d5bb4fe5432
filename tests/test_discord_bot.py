"""The production bot (CanrunBot) against the fake Discord, the fake hub and the fake GitHub."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from bot.config import parse_config
from bot.core.repo_id import RepoRef
from bot.discord import safe
from bot.discord.app import CanrunBot
from bot.services.host import machine_name
from bot.services.trial_queue import TrialRefused
from tests.conftest import seed_store
from tests.fakes.fake_discord import EPHEMERAL, UNKNOWN_INTERACTION, UNKNOWN_WEBHOOK, FakeDiscord, patch_discord
from tests.fakes.hub import FakeRepo
from tests.fakes.hub_zoo import QWEN3, TOKENIZER_JSON, verdict_cases, weights


GAME_COMMANDS = {"predict", "round", "leaderboard", "mystats", "season", "canrun-record"}


OTHER_SERVER = 444444444444444444  # the bot is in it too, but the config names only the first server


@pytest.fixture
async def fake():
    fake = await FakeDiscord(guild_ids=(111111111111111111, OTHER_SERVER)).start()
    yield fake
    await fake.stop()


@pytest.fixture
def make_config(tmp_path, zoo_hub, github, fake, capability_table):
    def make(trials: dict | None = None, predictions: dict | None = None, **discord_keys):
        data = {
            "hub": {"endpoint": zoo_hub.endpoint, "max_retries": 1},
            "store": {"path": "canrun.sqlite3"},
            "memory": {"budget_gb": 16.0},
            "suggestions": {"github_api": github.url, "timeout_seconds": 3.0},
            "discord": {"guild_ids": [fake.guild_ids[0]], "canrun_cooldown_seconds": 0.0, **discord_keys},
            "logging": {"file": ""},
            "trials": trials or {},
            "predictions": predictions or {},
        }
        return parse_config(data, base_dir=tmp_path)

    async def seed():
        await seed_store(tmp_path / "canrun.sqlite3", capability_table)

    make.seed = seed  # awaited by start_bot, inside the test's event loop
    return make


@pytest.fixture
async def start_bot(fake, make_config):
    bots = []

    async def start(**keys) -> CanrunBot:
        if not bots:
            await make_config.seed()
        bot = CanrunBot(make_config(**keys), guild_ready_timeout=0.05)
        bots.append(bot)
        # start() is login() then connect(); awaiting login here runs setup_hook and makes
        # wait_until_ready() valid before the gateway task has had a turn (Python 3.12+ runs
        # wait_for's coroutine in this task, so a freshly created start() task has not begun).
        await bot.login("fake-token")
        bot.task = asyncio.create_task(bot.connect())
        await asyncio.wait_for(bot.wait_until_ready(), 30)
        return bot

    with patch_discord(fake):
        yield start
        for bot in bots:
            await bot.close()
            await asyncio.wait_for(bot.task, 30)
    assert fake.unknown_requests == []


async def final_edit(fake, interaction, predicate=None):
    """The last PATCH of the original response once the bot has finished (suggestions included)."""
    await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original",
                                predicate=predicate or (lambda r: "Looking for" not in json.dumps(r.json)))
    return [r for r in fake.interaction_responses(interaction.id) if r.method == "PATCH"][-1].json


def embed_text(payload) -> str:
    e = payload["embeds"][0]
    return " ".join([e.get("title", ""), e.get("description", "")] +
                    [f["name"] + " " + f["value"] for f in e.get("fields", [])] + [e.get("footer", {}).get("text", "")])


def within_limits(payload) -> None:
    e = payload["embeds"][0]
    assert len(e.get("title", "")) <= 256 and len(e.get("description", "")) <= 4096
    assert len(e.get("fields", [])) <= 25 and all(len(f["value"]) <= 1024 for f in e.get("fields", []))
    total = len(e.get("title", "")) + len(e.get("description", "")) + len(e.get("footer", {}).get("text", ""))
    total += sum(len(f["name"]) + len(f["value"]) for f in e.get("fields", []))
    assert total <= 6000
    for row in payload.get("components", []):
        for c in row["components"]:
            assert len(c.get("label", "")) <= 80


async def test_commands_are_registered_to_the_configured_guild(fake, start_bot):
    await start_bot()
    names = {c["name"]: c for c in fake.registered_commands(fake.guild_ids[0])}
    assert set(names) == {"canrun", "canrun-sync", *GAME_COMMANDS}
    options = {o["name"]: o for o in names["canrun"]["options"]}
    assert options["repo"]["required"] and options["repo"]["autocomplete"]
    assert set(options) == {"repo", "revision", "refresh"}
    assert fake.registered_commands() == []  # nothing global when guilds are configured


async def test_cogs_are_extensions_and_trials_off_still_have_a_service_that_refuses(start_bot):
    bot = await start_bot()
    assert set(bot.extensions) == {"bot.discord.cogs.canrun", "bot.discord.cogs.admin", "bot.discord.cogs.predictions",
                                   "bot.discord.cogs.record"}
    with pytest.raises(TrialRefused, match="not enabled"):
        await bot.services.trials.request(RepoRef("mistralai/Mistral-7B-v0.1"), requested_by=1, guild_id=None,
                                          channel_id=None, prompt=None, max_tokens=None)
    assert await bot.services.trials.queue.waiting() == []  # nothing was queued


async def test_canrun_defers_then_answers_with_the_verdict(fake, start_bot):
    await start_bot()
    interaction = await fake.send_slash_command("canrun", {"repo": "https://huggingface.co/mistralai/Mistral-7B-v0.1"})
    payload = await final_edit(fake, interaction)
    callback = fake.interaction_responses(interaction.id)[0]
    assert callback.json == {"type": 5, "data": {}} or callback.json["type"] == 5
    assert payload["allowed_mentions"] == {"parse": []}
    e = payload["embeds"][0]
    assert e["title"] == "✅ Loads in mlx-lm"
    fields = {f["name"].split(" (")[0]: f["value"] for f in e["fields"]}
    assert "`mistral` → `mlx_lm.models.llama`" in fields["Architecture"] and "MODEL_REMAPPING" in fields["Architecture"]
    assert "7.2B parameters" in fields["Size"]
    assert "as 4-bit" in fields[f"Memory on {machine_name()}"]
    assert "Mistral-7B-v0.1-4bit" in fields["What you can do"]
    assert "mlx-lm " in e["footer"]["text"]
    buttons = [c for row in payload["components"] for c in row["components"]]
    assert buttons[0]["label"] == "Model page" and buttons[0]["url"].endswith("/mistralai/Mistral-7B-v0.1")
    assert "Mistral-7B-v0.1-4bit" in buttons[1]["url"]
    within_limits(payload)


CASES = verdict_cases()


@pytest.mark.parametrize("entry", CASES, ids=[e.repo.repo_id for e in CASES])
async def test_each_verdict_class_gets_its_headline(fake, start_bot, entry):
    from bot.core.verdicts import HEADLINES

    await start_bot()
    interaction = await fake.send_slash_command("canrun", {"repo": entry.repo.repo_id})
    payload = await final_edit(fake, interaction)
    assert HEADLINES[entry.verdict] in payload["embeds"][0]["title"]
    description = payload["embeds"][0]["description"]
    assert safe.escape(entry.words) in description or f"`{entry.words}`" in description  # text, or a code span
    within_limits(payload)


async def test_malformed_repo_gets_a_private_explanation(fake, start_bot, zoo_hub):
    await start_bot()
    before = len(zoo_hub.requests)
    interaction = await fake.send_slash_command("canrun", {"repo": "../../etc/passwd `@everyone`"})
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert "org/name" in callback.json["data"]["content"]
    assert callback.json["data"]["allowed_mentions"] == {"parse": []}
    assert len(zoo_hub.requests) == before


async def test_a_private_answer_is_never_posted_in_the_channel_when_the_interaction_expired(fake, start_bot, caplog):
    await start_bot()
    fake.fail_route("POST", "/callback", 404, UNKNOWN_INTERACTION)  # answered after Discord's 3 s
    await fake.send_slash_command("canrun", {"repo": "../../etc/passwd"})
    deadline = time.monotonic() + 10
    while "private answer" not in caplog.text:
        assert time.monotonic() < deadline, "the dropped answer was not logged"
        await asyncio.sleep(0.05)
    assert not [r for r in fake.requests if r.method == "POST" and "/channels/" in r.path]


async def test_cooldown_answers_with_the_wait(fake, start_bot):
    await start_bot(canrun_cooldown_seconds=30.0)
    first = await fake.send_slash_command("canrun", {"repo": "mlx-community/Qwen3-0.6B-4bit"})
    await final_edit(fake, first)
    second = await fake.send_slash_command("canrun", {"repo": "mlx-community/Qwen3-0.6B-4bit"})
    callback = await fake.wait_for_request("POST", f"/interactions/{second.id}/")
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert "ask again in" in callback.json["data"]["content"]
    other_user = await fake.send_slash_command("canrun", {"repo": "mlx-community/Qwen3-0.6B-4bit"},
                                               user=fake.make_user(name="someone-else"))
    await final_edit(fake, other_user)  # the cooldown is per member


async def test_mentions_and_markdown_from_repos_and_github_are_neutralised(fake, start_bot, zoo_hub, github):
    evil_type = "evil_<@123456789>_@everyone_**bold**"
    zoo_hub.add_repo(FakeRepo("evil-lab/Mention-Model", {
        "config.json": {**QWEN3, "model_type": evil_type}, "model.safetensors": weights(10),
        "tokenizer.json": TOKENIZER_JSON}))
    github.add_issue(66, "Support evil_ @everyone <@&42> [phish](https://evil.example/x) " + "x" * 3000,
                     pull_request=True)
    await start_bot()
    interaction = await fake.send_slash_command("canrun", {"repo": "evil-lab/Mention-Model"})
    payload = await final_edit(fake, interaction)
    text = embed_text(payload)
    assert "<@123456789>" not in text and "@everyone" not in text and "<@&42>" not in text
    outside_code = re.sub(r"`[^`]*`", "", text)  # inside a code span markdown is inert
    assert "**bold**" not in outside_code
    assert "](https://evil.example/x)" not in text  # the injected link is text, not a link
    assert payload["allowed_mentions"] == {"parse": []}
    within_limits(payload)


async def test_oversized_text_is_cut_to_discord_limits(fake, start_bot, zoo_hub):
    zoo_hub.add_repo(FakeRepo("big-lab/Long-Type", {
        "config.json": {**QWEN3, "model_type": "x" * 6000}, "pytorch_model.bin": b"0"}))
    await start_bot()
    interaction = await fake.send_slash_command("canrun", {"repo": "big-lab/Long-Type"})
    payload = await final_edit(fake, interaction)
    assert payload["embeds"][0]["title"].startswith("❌")
    within_limits(payload)


async def test_recent_verdict_is_reused_unless_refresh(fake, start_bot, zoo_hub):
    bot = await start_bot()
    first = await fake.send_slash_command("canrun", {"repo": "TheBloke/Llama-2-7B-AWQ"})
    await final_edit(fake, first)
    fetches = zoo_hub.count("GET", "/api/models/TheBloke/Llama-2-7B-AWQ")
    second = await fake.send_slash_command("canrun", {"repo": "TheBloke/Llama-2-7B-AWQ"})
    payload = await final_edit(fake, second)
    assert "cached" in payload["embeds"][0]["footer"]["text"]
    third = await fake.send_slash_command("canrun", {"repo": "TheBloke/Llama-2-7B-AWQ", "refresh": True})
    payload = await final_edit(fake, third)
    assert "cached" not in payload["embeds"][0]["footer"]["text"]
    assert zoo_hub.count("GET", "/api/models/TheBloke/Llama-2-7B-AWQ") == fetches + 1
    history = await bot.services.store.verdict_history("TheBloke/Llama-2-7B-AWQ")
    assert len(history) == 3 and {h["source"] for h in history} == {"discord"}
    async with bot.services.store.conn.execute(
        "SELECT guild_id, channel_id, user_id FROM verdict_history WHERE repo_id = ? ORDER BY id LIMIT 1",
        ("TheBloke/Llama-2-7B-AWQ",),
    ) as cur:
        row = await cur.fetchone()
    assert tuple(row) == (fake.guild_ids[0], fake.channel_id, int(fake.default_user["user"]["id"]))


async def test_autocomplete_searches_the_hub(fake, start_bot):
    await start_bot()
    interaction = await fake.send_autocomplete("canrun", {"repo": "mistral"}, focused="repo")
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    assert callback.json["type"] == 8
    values = [c["value"] for c in callback.json["data"]["choices"]]
    assert "mistralai/Mistral-7B-v0.1" in values and len(values) <= 25

    pasted = await fake.send_autocomplete("canrun", {"repo": "https://huggingface.co/org/pasted/tree/main"}, focused="repo")
    callback = await fake.wait_for_request("POST", f"/interactions/{pasted.id}/")
    assert callback.json["data"]["choices"][0]["value"] == "org/pasted"


async def test_autocomplete_answers_from_cache_when_the_hub_is_slow(fake, start_bot, zoo_hub):
    await start_bot(autocomplete_timeout_seconds=0.3)
    warm = await fake.send_autocomplete("canrun", {"repo": "llama"}, focused="repo")
    await fake.wait_for_request("POST", f"/interactions/{warm.id}/")
    zoo_hub.latency = 3.0  # far past the 0.3 s the autocomplete may wait: the answer cannot be the hub's
    try:
        slow = await fake.send_autocomplete("canrun", {"repo": "llama-2"}, focused="repo")
        callback = await fake.wait_for_request("POST", f"/interactions/{slow.id}/", timeout=2.5)
    finally:
        zoo_hub.latency = 0.0
    values = [c["value"] for c in callback.json["data"]["choices"]]
    assert values and all("llama-2" in v.lower() for v in values)


async def test_slow_suggestions_follow_the_verdict(fake, start_bot, github):
    github.latency = 1.5
    github.add_issue(812, "Add qwen9_next", pull_request=True)
    await start_bot()
    interaction = await fake.send_slash_command("canrun", {"repo": "future-lab/Qwen9-Next"})
    first = await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
    assert "Looking for conversions" in json.dumps(first.json)
    payload = await final_edit(fake, interaction)
    assert "#812" in embed_text(payload)


async def test_expired_token_continues_in_the_channel(fake, start_bot):
    await start_bot()
    fake.fail_route("PATCH", "/messages/@original", 404, UNKNOWN_WEBHOOK, count=5)
    await fake.send_slash_command("canrun", {"repo": "mlx-community/Qwen3-0.6B-4bit"})
    sent = await fake.wait_for_request("POST", f"/channels/{fake.channel_id}/messages")
    assert sent.json["embeds"][0]["title"] == "✅ Loads in mlx-lm"
    assert sent.json["allowed_mentions"] == {"parse": []}


async def test_unreachable_hub_is_explained(fake, start_bot, zoo_hub):
    await start_bot()
    # max_retries = 1: exactly two attempts, so no failure is left over for other tests of the shared hub
    zoo_hub.fail_next(503, count=2, path_contains="/api/models/NousResearch")
    interaction = await fake.send_slash_command("canrun", {"repo": "NousResearch/Llama-2-7b-hf"})
    edit = await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
    assert "could not be reached" in edit.json["content"]


async def test_unexpected_error_is_logged_and_answered_privately(fake, start_bot, caplog):
    bot = await start_bot()

    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    bot.services.checker.hub.fetch = broken  # fault injection: the service fails in a way nobody planned for
    interaction = await fake.send_slash_command("canrun", {"repo": "odd-lab/whatever"})
    followup = await fake.wait_for_request("POST", f"/webhooks/{fake.app_id}/{interaction.token}")
    assert followup.json["flags"] & EPHEMERAL and "logged" in followup.json["content"]
    # The public "thinking..." placeholder does not stay behind.
    await fake.wait_for_request("DELETE", f"/webhooks/{fake.app_id}/{interaction.token}/messages/@original")
    assert any("command /canrun failed" in r.message and r.exc_info for r in caplog.records)


async def test_reconnect_mid_command(fake, start_bot, zoo_hub):
    await start_bot()
    zoo_hub.latency = 0.3
    try:
        interaction = await fake.send_slash_command("canrun", {"repo": "allenai/OLMo-1B"})
        await fake.disconnect_gateway(4000)
        payload = await final_edit(fake, interaction)
    finally:
        zoo_hub.latency = 0.0
    assert "Architecture not supported" in payload["embeds"][0]["title"]
    again = await fake.send_slash_command("canrun", {"repo": "allenai/OLMo-1B"})
    await final_edit(fake, again)
    assert any(p["op"] == 6 for c in fake.gateway_connections for p in c.received)  # it RESUMEd


async def test_commands_sync_only_when_changed_and_owner_can_force(fake, start_bot):
    bot = await start_bot()
    puts = lambda: sum(1 for r in fake.requests if r.method == "PUT" and "/commands" in r.path)  # noqa: E731
    assert puts() == 1
    await bot.close()
    await asyncio.wait_for(bot.task, 30)
    bot = await start_bot()  # a restart with the same commands: no new sync
    assert puts() == 1

    member = await fake.send_slash_command("canrun-sync", user=fake.make_user(name="not-owner"))
    denied = await fake.wait_for_request("POST", f"/interactions/{member.id}/")
    assert denied.json["data"]["flags"] & EPHEMERAL and "not for you" in denied.json["data"]["content"]
    owner = await fake.send_slash_command("canrun-sync", user=fake.owner)
    await fake.wait_for_request("POST", f"/webhooks/{fake.app_id}/{owner.token}")
    assert puts() == 2


async def test_commands_answer_only_in_the_configured_servers(fake, start_bot, zoo_hub):
    await start_bot()
    assert fake.registered_commands(OTHER_SERVER) == []
    before = len(zoo_hub.requests)
    # The command as an earlier run without guild_ids registered it everywhere, used in another server.
    interaction = await fake.send_slash_command("canrun", {"repo": "mlx-community/Qwen3-0.6B-4bit"},
                                                guild_id=OTHER_SERVER)
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert "only in its study group's server" in callback.json["data"]["content"]
    assert len(zoo_hub.requests) == before  # nothing was looked up
    typed = await fake.send_autocomplete("canrun", {"repo": "qwen"}, "repo", guild_id=OTHER_SERVER)
    answer = await fake.wait_for_request("POST", f"/interactions/{typed.id}/")
    assert answer.json == {"type": 8, "data": {"choices": []}}  # no suggestions, and no error


async def test_a_server_the_commands_cannot_reach_is_logged_and_the_others_still_get_them(fake, start_bot, caplog):
    wrong = 555555555555555555  # a channel's id pasted for a server's
    fake.fail_route("PUT", f"/guilds/{wrong}/commands", 403, {"message": "Missing Access", "code": 50001}, count=2)
    bot = await start_bot(guild_ids=[wrong, fake.guild_ids[0]])
    assert {c["name"] for c in fake.registered_commands(fake.guild_ids[0])} >= {"canrun", "predict"}
    assert any(str(wrong) in r.message and "guild_ids" in r.message for r in caplog.records if r.levelname == "ERROR")
    await bot.close()
    await asyncio.wait_for(bot.task, 30)
    await start_bot(guild_ids=[wrong, fake.guild_ids[0]])  # not recorded as synced: the next start tries again
    assert sum(1 for r in fake.requests if r.method == "PUT" and f"/guilds/{wrong}/" in r.path) == 2
