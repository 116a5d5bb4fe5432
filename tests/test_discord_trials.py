"""/trial and /trials through the fake Discord: a real download -> load -> generate of tiny models."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.core.repo_id import RepoRef
from tests.fakes.fake_discord import EPHEMERAL, UNKNOWN_WEBHOOK
from tests.fakes.hub import FakeRepo
from tests.fakes.tiny_model import tiny_llama_files
from tests.test_discord_bot import GAME_COMMANDS, fake, make_config, start_bot  # noqa: F401 - fixtures
from tests.waiting import eventually

# warm_worker off: a spare imports mlx-lm beside every test; test_discord_trials runs the default (on) end to end.
TRIALS = {"enabled": True, "progress_interval_seconds": 0.2, "min_free_disk_gb": 0.0, "default_max_tokens": 4,
          "warm_worker": False}


@pytest.fixture(scope="module", autouse=True)
def tiny_repos(zoo_hub):
    files = tiny_llama_files()
    for name in ("tiny-lab/llama-a", "tiny-lab/llama-b", "tiny-lab/slow-1", "tiny-lab/slow-2"):
        zoo_hub.add_repo(FakeRepo(name, dict(files)))


async def final_trial_message(fake, predicate_text, timeout=60):
    """The latest state of the message that shows a trial, once it contains `predicate_text`."""
    def has(r):
        return r.json is not None and predicate_text in json.dumps(r.json, ensure_ascii=False)
    return await fake.wait_for_request("PATCH", "/messages/", predicate=has, timeout=timeout)


async def trial_end(bot, trial_id, timeout=60):
    """The trial once it has ended (it is queued a moment after the /trial interaction is sent)."""
    async def ended():
        while await bot.services.trials.queue.get(trial_id) is None:
            await asyncio.sleep(0.05)
        return await bot.services.trials.queue.wait_finished(trial_id)
    return await asyncio.wait_for(ended(), timeout)


async def test_trial_commands_exist_only_when_enabled(fake, start_bot):
    await start_bot()
    assert {c["name"] for c in fake.registered_commands(fake.guild_ids[0])} == {"canrun", "canrun-sync", *GAME_COMMANDS}


async def test_moderator_runs_a_trial_end_to_end(fake, start_bot):
    bot = await start_bot(trials={**TRIALS, "warm_worker": True})  # as the bot runs by default
    names = {c["name"]: c for c in fake.registered_commands(fake.guild_ids[0])}
    assert {"trial", "trials"} <= set(names)
    assert int(names["trial"]["default_member_permissions"]) == 1 << 5  # manage_guild: hidden from members

    interaction = await fake.send_slash_command("trial", {"repo": "tiny-lab/llama-a", "prompt": "hi @everyone"},
                                                user=fake.owner)
    done = await final_trial_message(fake, "Numbers")
    embed = done.json["embeds"][0]
    assert embed["title"] == "🧪 Trial #1: tiny-lab/llama-a"
    assert "worked and the model generated text" in embed["description"]
    fields = {f["name"].split(" (")[0]: f["value"] for f in embed["fields"]}
    assert "load " in fields["Numbers"] and "tok/s" in fields["Numbers"] and "peak memory" in fields["Numbers"]
    assert "mlx-lm 0.32" in fields["Machine"]
    assert fields["Generated"].startswith("```")
    # Its weights are random: load() worked, but its output does not look like language (tests/test_output_check.py).
    assert "⚠️ Loaded, but the output looks broken: perplexity" in embed["description"]
    assert fields["Output check"].startswith("perplexity ") and "guessing at random: 256" in fields["Output check"]
    assert done.json["allowed_mentions"] == {"parse": []}
    assert done.json.get("components") == []  # no Cancel button once it is over
    assert (await bot.services.trials.queue.get(1)).result["warm_worker"] is True  # the worker started ahead ran it
    edits = [r for r in fake.interaction_responses(interaction.id) if r.method == "PATCH"]
    shown = [json.dumps(r.json, ensure_ascii=False) for r in edits]
    assert any("downloading" in s for s in shown) and any("Cancel" in s for s in shown)

    recent = await fake.send_slash_command("trials", {}, subcommand="recent", user=fake.make_user())
    answer = await fake.wait_for_request("POST", f"/interactions/{recent.id}/")
    listed = answer.json["data"]["embeds"][0]["description"]
    assert "tiny-lab/llama-a" in listed and "loaded, but the output looks broken (perplexity" in listed


async def test_refusals_say_why(fake, start_bot):
    await start_bot(trials={**TRIALS, "max_download_gb": 10.0})
    for repo, words in [("TheBloke/Llama-2-7B-GGUF", "unsupported_weights"),
                        ("mistralai/Mistral-7B-v0.1", "download limit"),
                        ("odd-lab/custom-model-file", "remote_code")]:
        interaction = await fake.send_slash_command("trial", {"repo": repo}, user=fake.owner)
        edit = await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
        content = edit.json["content"]
        assert "No trial for" in content and words in content and ".." not in content, content


async def test_members_cannot_start_trials(fake, start_bot):
    await start_bot(trials=TRIALS)
    interaction = await fake.send_slash_command("trial", {"repo": "tiny-lab/llama-a"}, user=fake.make_user())
    answer = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    assert answer.json["data"]["flags"] & EPHEMERAL and "not for you" in answer.json["data"]["content"]


async def test_cancel_button_checks_who_clicks_and_survives_a_restart(fake, start_bot, zoo_hub):
    bot = await start_bot(trials=TRIALS)
    for repo in ("tiny-lab/slow-1", "tiny-lab/slow-2"):
        await bot.services.checker.check(RepoRef(repo))  # verdicts cached: only the downloads will be slow
    zoo_hub.slow_paths["slow-1/resolve/"] = 30
    zoo_hub.slow_paths["slow-2/resolve/"] = 30
    try:
        await fake.send_slash_command("trial", {"repo": "tiny-lab/slow-1"}, user=fake.owner)
        await final_trial_message(fake, "downloading")
        second = await fake.send_slash_command("trial", {"repo": "tiny-lab/slow-2"}, user=fake.owner)
        await fake.wait_for_request("PATCH", f"{second.token}/messages/@original", predicate=lambda r: "Queued" in json.dumps(r.json))

        async def both_remembered():  # the /trial responses' ids, stored just after they are edited
            ids = [(await bot.services.trials.queue.get(n)).message_id for n in (1, 2)]
            return ids if None not in ids else None

        shown = await eventually(both_remembered)
        await bot.close()  # the Mac restarts with one trial running and one queued
        await asyncio.wait_for(bot.task, 30)
        bot = await start_bot(trials=TRIALS)
        first = await bot.services.trials.queue.get(1)
        assert (first.status, first.error) == ("failed", "interrupted by restart")
        # Both go on in their own messages, edited through the channel now that the tokens are gone.
        ended = await fake.wait_for_request("PATCH", f"/channels/{fake.channel_id}/messages/{shown[0]}",
                                            predicate=lambda r: "interrupted by restart" in json.dumps(r.json))
        assert ended.json["components"] == []  # no Cancel button on a finished trial
        await fake.wait_for_request("PATCH", f"/channels/{fake.channel_id}/messages/{shown[1]}",
                                    predicate=lambda r: "downloading" in json.dumps(r.json))
        assert not [r for r in fake.requests if r.method == "POST" and r.path.endswith(f"{fake.channel_id}/messages")]
        assert (await bot.services.trials.queue.get(2)).status == "running"

        stranger = await fake.send_component("canrun:trial:cancel:2", user=fake.make_user(name="stranger"))
        refused = await fake.wait_for_request("POST", f"/interactions/{stranger.id}/")
        assert refused.json["data"]["flags"] & EPHEMERAL and "Only whoever asked" in refused.json["data"]["content"]
        owner = await fake.send_component("canrun:trial:cancel:2", user=fake.owner)
        deferred = await fake.wait_for_request("POST", f"/interactions/{owner.id}/")
        assert deferred.json["type"] == 5 and deferred.json["data"]["flags"] & EPHEMERAL  # answered at once
        said = await fake.wait_for_request("POST", f"/webhooks/{fake.app_id}/{owner.token}")
        assert "Cancelling trial #2" in said.json["content"]
        cancelled = await final_trial_message(fake, "Cancelled.", timeout=10)
        assert "Cancelled by" in cancelled.json["embeds"][0]["description"]
        assert (await bot.services.trials.queue.get(2)).status == "cancelled"
    finally:
        zoo_hub.slow_paths.clear()


async def test_expired_token_moves_progress_to_the_channel(fake, start_bot):
    await start_bot(trials=TRIALS)
    fake.fail_route("PATCH", "/messages/@original", 404, UNKNOWN_WEBHOOK, count=100)
    await fake.send_slash_command("trial", {"repo": "tiny-lab/llama-b"}, user=fake.owner)
    posted = await fake.wait_for_request("POST", f"/channels/{fake.channel_id}/messages")
    assert "Trial #" in posted.json["embeds"][0]["title"]
    done = await fake.wait_for_request("PATCH", f"/channels/{fake.channel_id}/messages/",
                                       predicate=lambda r: "Numbers" in json.dumps(r.json), timeout=60)
    assert done.json["allowed_mentions"] == {"parse": []}


async def test_cache_budget_evicts_the_least_recently_used_model(fake, start_bot, tmp_path):
    # Room for one tiny model (~190 kB on disk) but not two; models stay after their trial.
    bot = await start_bot(trials={**TRIALS, "keep_after_trial": True, "cache_budget_gb": 0.0003})
    cache = bot.services.trials.admission.cache
    for number, repo in enumerate(("tiny-lab/llama-a", "tiny-lab/llama-b"), start=1):
        await fake.send_slash_command("trial", {"repo": repo}, user=fake.owner)
        trial = await trial_end(bot, number)
        assert trial.status == "succeeded", trial.error
        assert [m.repo_id for m in cache.models()] == [repo]  # the other one was evicted to make room
    assert 0 < cache.usage() <= cache.budget_bytes


async def test_a_model_bigger_than_the_cache_budget_fails_with_the_reason(fake, start_bot):
    bot = await start_bot(trials={**TRIALS, "cache_budget_gb": 0.0001})
    await fake.send_slash_command("trial", {"repo": "tiny-lab/llama-a"}, user=fake.owner)
    failed = await final_trial_message(fake, "❌", timeout=30)
    trial = await bot.services.trials.queue.get(1)
    assert trial.status == "failed" and trial.error in json.dumps(failed.json, ensure_ascii=False)
    assert bot.services.trials.admission.cache.models() == []
