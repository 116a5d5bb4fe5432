"""The prediction game through the fake Discord: /predict, rounds with buttons, reveal, leaderboard, stats."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.core.repo_id import RepoRef
from bot.services.host import machine_name
from bot.services import predictions as game
from tests.fakes.fake_discord import EPHEMERAL
from tests.fakes.hub import FakeRepo
from tests.fakes.tiny_model import tiny_llama_files
from tests.test_discord_bot import embed_text, fake, make_config, start_bot  # noqa: F401 - fixtures
from tests.waiting import eventually

LOADS_REPO = "mistralai/Mistral-7B-v0.1"  # the zoo's verdict: loads
GGUF_REPO = "TheBloke/Llama-2-7B-GGUF"  # the zoo's verdict: unsupported_weights
GATED_REPO = "meta-llama/Llama-3.1-8B"  # the zoo's verdict: gated
GAME = {"min_settled": 1}
# warm_worker off: a spare imports mlx-lm beside every test; test_discord_trials runs the default (on) end to end.
TRIALS = {"enabled": True, "progress_interval_seconds": 0.2, "min_free_disk_gb": 0.0, "default_max_tokens": 4,
          "warm_worker": False}


@pytest.fixture(scope="module", autouse=True)
def tiny_repos(zoo_hub):
    files = tiny_llama_files()
    for name in ("game-lab/tiny-round", "game-lab/tiny-locked"):
        zoo_hub.add_repo(FakeRepo(name, dict(files)))
    # An upload cut short: the header promises more bytes than the file holds. Metadata, the static gates
    # and the dry load (which reads headers only) all see a loadable model: only a real load() finds out.
    broken = {**files, "model.safetensors": files["model.safetensors"][:-64]}
    zoo_hub.add_repo(FakeRepo("game-lab/tiny-broken", {k: v.encode() if isinstance(v, str) else v
                                                         for k, v in broken.items()}))


async def answer_of(fake, interaction) -> dict:
    """The interaction's immediate response (callback) data."""
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    return callback.json.get("data") or {}


async def private_answer(fake, interaction) -> str:
    data = await answer_of(fake, interaction)
    assert data.get("flags", 0) & EPHEMERAL, data
    return data["content"]


async def click(fake, custom_id, user, value=None) -> str:
    if value is None:
        interaction = await fake.send_component(custom_id, user=user)
    else:
        interaction = await fake.send_component(custom_id, component_type=3, values=[str(value)], user=user)
    return await private_answer(fake, interaction)


async def open_round(fake, repos: str) -> dict[int, int]:
    """Open a round as the owner; returns the round card message id of each position."""
    interaction = await fake.send_slash_command("round", {"repos": repos}, subcommand="open", user=fake.owner)
    count = len(repos.split())
    # The checks of every repo come first (a dry load each): a generous wait, for a condition, under load.
    await fake.wait_for_request("POST", f"/webhooks/{fake.app_id}/{interaction.token}",
                                predicate=lambda r: f"{count}/{count}" in json.dumps(r.json), timeout=60)
    header = [r for r in fake.interaction_responses(interaction.id) if r.method == "PATCH"][-1].json
    assert "Round" in header["embeds"][0]["title"] and header["allowed_mentions"] == {"parse": []}
    cards = [m for m in fake.messages.values() if "canrun:round:" in json.dumps(m.get("components", []))]
    return {i: int(m["id"]) for i, m in enumerate(cards, start=1)}


async def results_message(fake, timeout=30) -> dict:
    posted = await fake.wait_for_request("POST", f"/channels/{fake.channel_id}/messages",
                                         predicate=lambda r: r.status == 200 and "results" in json.dumps(r.json),
                                         timeout=timeout)
    assert posted.json["allowed_mentions"] == {"parse": []}
    return posted.json["embeds"][0]


async def test_a_whole_round_by_verdict_with_a_restart_before_reveal(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    ada, bo, cy = (fake.make_user(name=n) for n in ("ada", "bo", "cy"))
    ids = {name: int(u["user"]["id"]) for name, u in (("ada", ada), ("bo", bo), ("cy", cy))}
    cards = await open_round(fake, f"{LOADS_REPO} {GGUF_REPO}")
    card = fake.messages[cards[1]]
    custom_ids = [c["custom_id"] for row in card["components"] for c in row["components"]]
    assert custom_ids == ["canrun:round:1:1:yes", "canrun:round:1:1:no", "canrun:round:1:1:sure"]

    assert "Press **Loads** or **Won't load** first" in await click(fake, "canrun:round:1:1:sure", ada, 90)
    assert "loads, 70 % sure" in await click(fake, "canrun:round:1:1:yes", ada)  # the configured default
    assert "loads, 90 % sure" in await click(fake, "canrun:round:1:1:sure", ada, 90)
    assert "won't load, 70 % sure" in await click(fake, "canrun:round:1:1:no", bo)

    await bot.close()  # the Mac restarts while the round is open: the cards must keep working
    await asyncio.wait_for(bot.task, 30)
    bot = await start_bot(predictions=GAME)

    assert "won't load, 70 % sure" in await click(fake, "canrun:round:1:2:no", cy)
    assert "won't load, 80 % sure" in await click(fake, "canrun:round:1:2:sure", cy, 80)
    assert "first" in await click(fake, "canrun:round:1:2:sure", bo, 60)  # bo has no answer on this repo yet
    close = await fake.send_slash_command("round", {}, subcommand="close", user=fake.owner)
    assert "closed" in (await answer_of(fake, close))["content"]
    assert "closed" in await click(fake, "canrun:round:1:1:yes", bo)  # too late to change

    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    plan = await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
    assert "static verdict" in plan.json["content"] and "trial" not in plan.json["content"].replace("static", "")
    embed = await results_message(fake)
    text = embed_text({"embeds": [embed]})
    assert f"✅ [{LOADS_REPO}]" in text and "by canrun's static verdict" in text
    assert "❌ [TheBloke/Llama\\-2\\-7B\\-GGUF]" in text or "❌ [TheBloke/Llama-2-7B-GGUF]" in text
    # ada: loads at 90 % and it loads: 100(1 - 0.1²) - 75 = 24. cy: won't load at 80 %, right: 100(1-0.2²)-75 = 21.
    # bo: won't load at 70 % on a repo that loads: 100(1 - 0.7²) - 75 = -24.
    points = embed["fields"][0]["value"]
    assert points.index(f"<@{ids['ada']}> **+24.00**") < points.index(f"<@{ids['cy']}> **+21.00**") \
        < points.index(f"<@{ids['bo']}> **-24.00**")

    board = await fake.send_slash_command("leaderboard", {}, user=bo)
    lines = (await answer_of(fake, board))["embeds"][0]["description"].splitlines()
    members = [line for line in lines if "<@" in line]
    assert [line.split("<@")[1].split(">")[0] for line in members] == [str(ids[n]) for n in ("ada", "cy", "bo")]
    # canrun's row: 95 % on the repo that loads (+24.75), 2 % on the GGUF one (+24.96): above everyone, unranked
    assert lines[0] == "🤖 canrun **+49.71** · 100% right of 2 · the baseline, not ranked"
    assert lines[1].startswith("**1.**") and lines[1].endswith("vs canrun -0.75")

    stats = await fake.send_slash_command("mystats", {}, user=ada)
    answered = await fake.wait_for_request("POST", f"/interactions/{stats.id}/")
    assert answered.json["data"]["embeds"][0]["image"]["url"] == "attachment://calibration.png"
    assert [f.filename for f in answered.files] == ["calibration.png"]
    assert answered.files[0].data.startswith(b"\x89PNG")
    assert "+24.00 · #1" in embed_text(answered.json["data"])
    # calibration by kind: Mistral 7B in bf16 is too large for the tests' 16 GB budget: a memory question
    fields = {f["name"]: f["value"] for f in answered.json["data"]["embeds"][0]["fields"]}
    assert fields["Right, by kind of model"] == "memory: 100% (1 of 1)"
    stats = await fake.send_slash_command("mystats", {}, user=bo)  # wrong on the model that loads
    answered = await fake.wait_for_request("POST", f"/interactions/{stats.id}/")
    fields = {f["name"]: f["value"] for f in answered.json["data"]["embeds"][0]["fields"]}
    assert fields["Right, by kind of model"] == "memory: 0% (0 of 1)"


async def test_concurrent_clicks_leave_one_prediction_and_its_history(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    await open_round(fake, LOADS_REPO)
    members = [fake.make_user(name=f"m{i}") for i in range(6)]
    clicks = [fake.send_component(f"canrun:round:1:1:{'yes' if i % 2 else 'no'}", user=m)
              for m in members for i in range(3)]
    interactions = await asyncio.gather(*clicks)
    for interaction in interactions:
        assert "Recorded in round 1" in await private_answer(fake, interaction)
    for m in members:
        user_id = int(m["user"]["id"])
        p = await game.get_prediction(bot.services.store, fake.guild_ids[0], user_id, LOADS_REPO, 1)
        history = await game.prediction_history(bot.services.store, p.id)
        assert history[0].change == "placed" and all(h.change == "changed" for h in history[1:])
        assert history[-1].will_load == p.will_load
    rows = await bot.services.store.conn.execute_fetchall("SELECT COUNT(*) FROM predictions")
    assert rows[0][0] == len(members)


async def test_a_round_card_that_fails_on_canruns_side_answers_privately(fake, start_bot, monkeypatch, caplog):
    await start_bot(predictions=GAME)
    await open_round(fake, LOADS_REPO)

    async def broken(*args, **kwargs):
        raise RuntimeError("database disk image is malformed")

    monkeypatch.setattr(game, "place_prediction", broken)  # fault injection: a failure nobody planned for
    answer = await click(fake, "canrun:round:1:1:yes", fake.make_user(name="ada"))
    assert "went wrong on canrun's side" in answer
    assert any("component canrun:round:1:1:yes failed" in r.message and r.exc_info for r in caplog.records)


async def test_predict_outside_rounds_settles_on_canrun_and_peeks_do_not_score(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    guild = fake.guild_ids[0]
    eve, finn = fake.make_user(name="eve"), fake.make_user(name="finn")
    said = await fake.send_slash_command("predict", {"repo": GGUF_REPO, "will_load": "no", "confidence": 95}, user=eve)
    assert "won't load, 95 % sure" in await private_answer(fake, said)
    bad = await fake.send_slash_command("predict", {"repo": "not a repo!", "will_load": "yes"}, user=eve)
    assert "org/name" in await private_answer(fake, bad) or "repo" in (await answer_of(fake, bad))["content"]

    checked = await fake.send_slash_command("canrun", {"repo": GGUF_REPO}, user=finn)
    await fake.wait_for_request("PATCH", f"{checked.token}/messages/@original",
                                predicate=lambda r: "Looking for" not in json.dumps(r.json))
    p = await game.get_prediction(bot.services.store, guild, int(eve["user"]["id"]), GGUF_REPO)
    assert p.status == "settled" and p.outcome is False and p.points == pytest.approx(24.75)

    late = await fake.send_slash_command("predict", {"repo": GGUF_REPO, "will_load": "no"}, user=finn)
    assert "after seeing the answer" in await private_answer(fake, late)
    p = await game.get_prediction(bot.services.store, guild, int(finn["user"]["id"]), GGUF_REPO)
    assert p.peeked and p.status == "open"
    # finn's answer was posted in the channel: a member who only read it has peeked as well.
    reader = await fake.send_slash_command("predict", {"repo": GGUF_REPO, "will_load": "no"},
                                           user=fake.make_user(name="gil"))
    assert "after seeing the answer" in await private_answer(fake, reader)


async def test_answers_about_another_revision_or_a_gated_repo_settle_nothing(fake, start_bot, zoo_hub):
    bot = await start_bot(predictions=GAME)
    guild, hana = fake.guild_ids[0], fake.make_user(name="hana")
    for repo in (LOADS_REPO, GATED_REPO):
        said = await fake.send_slash_command("predict", {"repo": repo, "will_load": "yes"}, user=hana)
        await private_answer(fake, said)
    commit = zoo_hub._repos[LOADS_REPO].sha  # a pinned commit: not "the model" people predicted on
    for options in ({"repo": LOADS_REPO, "revision": commit}, {"repo": GATED_REPO}):
        checked = await fake.send_slash_command("canrun", options, user=fake.make_user(name="ian"))
        await fake.wait_for_request("PATCH", f"{checked.token}/messages/@original",
                                    predicate=lambda r: "Looking for" not in json.dumps(r.json))
    for repo in (LOADS_REPO, GATED_REPO):
        assert (await game.get_prediction(bot.services.store, guild, int(hana["user"]["id"]), repo)).status == "open"


async def test_members_cannot_run_rounds_or_seasons(fake, start_bot):
    await start_bot(predictions=GAME)
    commands = {c["name"]: c for c in fake.registered_commands(fake.guild_ids[0])}
    assert int(commands["round"]["default_member_permissions"]) == 1 << 5
    assert int(commands["season"]["default_member_permissions"]) == 1 << 5
    member = fake.make_user(name="member")
    tried = await fake.send_slash_command("round", {"repos": LOADS_REPO}, subcommand="open", user=member)
    assert "not for you" in await private_answer(fake, tried)
    tried = await fake.send_slash_command("season", {"name": "x"}, subcommand="start", user=member)
    assert "not for you" in await private_answer(fake, tried)


async def test_round_open_refuses_bad_lists_and_a_second_round(fake, start_bot):
    await start_bot(predictions=GAME)
    too_many = " ".join(f"org/m{i}" for i in range(6))
    tried = await fake.send_slash_command("round", {"repos": too_many}, subcommand="open", user=fake.owner)
    assert "1 to 5 different models" in await private_answer(fake, tried)
    twice = await fake.send_slash_command("round", {"repos": f"{LOADS_REPO} {LOADS_REPO}"}, subcommand="open",
                                          user=fake.owner)
    assert "1 to 5 different models" in await private_answer(fake, twice)
    typo = await fake.send_slash_command("round", {"repos": "mistralai/Mistral-7B-v0.9"}, subcommand="open",
                                         user=fake.owner)
    edit = await fake.wait_for_request("PATCH", f"{typo.token}/messages/@original")
    assert "Not on Hugging Face" in edit.json["content"]
    await open_round(fake, LOADS_REPO)
    again = await fake.send_slash_command("round", {"repos": GGUF_REPO}, subcommand="open", user=fake.owner)
    edit = await fake.wait_for_request("PATCH", f"{again.token}/messages/@original")
    assert "already in play" in edit.json["content"]


async def test_void_seasons_and_leaderboard_pages(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    guild = fake.guild_ids[0]
    started = await fake.send_slash_command("season", {"name": "Autumn"}, subcommand="start", user=fake.owner)
    assert "Autumn" in (await answer_of(fake, started))["content"]
    await open_round(fake, f"{LOADS_REPO} {GGUF_REPO}")
    gus = fake.make_user(name="gus")
    await click(fake, "canrun:round:1:1:yes", gus)
    await click(fake, "canrun:round:1:2:yes", gus)
    voided = await fake.send_slash_command("round", {"repo": GGUF_REPO, "reason": "repo changed @everyone"},
                                           subcommand="void", user=fake.owner)
    content = (await answer_of(fake, voided))["content"]
    assert "1 predictions voided" in content and "@\u200beveryone" in content
    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
    embed = await results_message(fake)
    assert "voided (repo changed" in embed["description"]

    ended = await fake.send_slash_command("season", {}, subcommand="end", user=fake.owner)
    assert "has ended. `/leaderboard season:Autumn` shows" in (await answer_of(fake, ended))["content"]
    autumn = await fake.send_slash_command("leaderboard", {"season": "Autumn"}, user=gus)
    board = (await answer_of(fake, autumn))["embeds"][0]
    assert "season Autumn" in board["title"] and "+16.00" in board["description"]  # only the live repo scored
    missing = await fake.send_slash_command("leaderboard", {"season": "Winter"}, user=gus)
    assert "no season called Winter" in await private_answer(fake, missing)
    far = await fake.send_slash_command("leaderboard", {"page": 9}, user=gus)
    assert "no page 9" in (await answer_of(fake, far))["embeds"][0]["description"]
    season = await game.season_by_name(bot.services.store, guild, "Autumn")
    assert (await game.member_stats(bot.services.store, guild, int(gus["user"]["id"]), season_id=season.id)).settled == 1


async def test_reveal_by_trial_and_trials_lock_predictions(fake, start_bot, zoo_hub):
    bot = await start_bot(predictions=GAME, trials=TRIALS)
    guild = fake.guild_ids[0]
    hal = fake.make_user(name="hal")

    # A trial running on a repo locks predictions on it, and its result settles them.
    said = await fake.send_slash_command("predict", {"repo": "game-lab/tiny-locked", "will_load": "yes",
                                                     "confidence": 80}, user=hal)
    await private_answer(fake, said)
    await bot.services.checker.check(RepoRef("game-lab/tiny-locked"))  # the verdict cached: only the download is slow
    zoo_hub.slow_paths["tiny-locked/resolve/"] = 3
    try:
        await fake.send_slash_command("trial", {"repo": "game-lab/tiny-locked"}, user=fake.owner)
        await fake.wait_for_request("PATCH", "/messages/", predicate=lambda r: "downloading" in json.dumps(r.json))
        late = await fake.send_slash_command("predict", {"repo": "game-lab/tiny-locked", "will_load": "no"},
                                             user=fake.make_user(name="ivy"))
        assert "locked" in await private_answer(fake, late)
        await fake.wait_for_request("PATCH", "/messages/", predicate=lambda r: "Numbers" in json.dumps(r.json),
                                    timeout=60)
    finally:
        zoo_hub.slow_paths.clear()
    for _ in range(50):
        p = await game.get_prediction(bot.services.store, guild, int(hal["user"]["id"]), "game-lab/tiny-locked")
        if p.status == "settled":
            break
        await asyncio.sleep(0.1)
    assert (p.status, p.settled_by, p.outcome, p.points) == ("settled", "trial", True, 21.0)

    # A round revealed by a real trial.
    await open_round(fake, "game-lab/tiny-round")
    await click(fake, "canrun:round:1:1:no", hal)
    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    plan = await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
    assert "by trial #2" in plan.json["content"]
    embed = await results_message(fake, timeout=60)
    assert f"loads**, by a real trial on {machine_name()}" in embed["description"]
    assert f"<@{hal['user']['id']}> **-24.00**" in embed["fields"][0]["value"]


async def test_a_trial_overturns_a_verdict_settlement_once_and_says_so(fake, start_bot):
    bot = await start_bot(predictions=GAME, trials=TRIALS)
    guild, repo = fake.guild_ids[0], "game-lab/tiny-broken"
    jo = fake.make_user(name="jo")
    said = await fake.send_slash_command("predict", {"repo": repo, "will_load": "yes", "confidence": 80}, user=jo)
    await private_answer(fake, said)
    checked = await fake.send_slash_command("canrun", {"repo": repo}, user=fake.make_user(name="kim"))
    await fake.wait_for_request("PATCH", f"{checked.token}/messages/@original",
                                predicate=lambda r: "Looking for" not in json.dumps(r.json))
    p = await game.get_prediction(bot.services.store, guild, int(jo["user"]["id"]), repo)
    assert (p.settled_by, p.outcome, p.points) == ("verdict", True, 21.0)  # the verdict (static and dry load): loads

    await fake.send_slash_command("trial", {"repo": repo}, user=fake.owner)
    note = await fake.wait_for_request("POST", f"/channels/{fake.channel_id}/messages",
                                       predicate=lambda r: "scored again" in json.dumps(r.json), timeout=60)
    assert "does not load" in note.json["content"] and note.json["allowed_mentions"] == {"parse": []}
    p = await game.get_prediction(bot.services.store, guild, int(jo["user"]["id"]), repo)
    assert (p.settled_by, p.outcome, p.points, p.resettled) == ("trial", False, -39.0, True)
    history = [h.change for h in await game.prediction_history(bot.services.store, p.id)]
    assert history == ["placed", "settled", "resettled"]


@pytest.mark.parametrize("by_trial", [False, True])
async def test_a_reveal_uses_a_trial_that_ran_while_the_round_was_open(fake, start_bot, by_trial):
    bot = await start_bot(predictions={**GAME, "round_reveal_by_trial": by_trial}, trials=TRIALS)
    repo = "game-lab/tiny-broken"  # the verdict says it loads; a real load() finds the upload cut short
    await open_round(fake, repo)
    await click(fake, "canrun:round:1:1:yes", fake.make_user(name="lou"))
    await fake.send_slash_command("trial", {"repo": repo}, user=fake.owner)  # while the round is open
    for _ in range(600):
        trial = await bot.services.trials.queue.latest_judged(repo)
        if trial is not None:
            break
        await asyncio.sleep(0.1)
    assert trial is not None and trial.loaded is False
    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
    await results_message(fake, timeout=60)
    results = await game.round_results(bot.services.store, 1)
    assert [(r.outcome, r.settled_by) for r in results.round.repos] == [(False, "trial")]
    assert [t.id for t in await bot.services.trials.queue.recent()] == [trial.id]  # no second download and load


async def test_reveal_voids_a_repo_whose_answer_says_nothing_about_load(fake, start_bot):
    await start_bot(predictions=GAME)
    await open_round(fake, f"{LOADS_REPO} {GATED_REPO}")
    jan = fake.make_user(name="jan")
    await click(fake, "canrun:round:1:1:yes", jan)
    await click(fake, "canrun:round:1:2:no", jan)
    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    plan = await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
    assert "voided: Hugging Face now says gated" in plan.json["content"]
    embed = await results_message(fake)
    assert "🚫" in embed["description"] and f"<@{jan['user']['id']}> **+16.00**" in embed["fields"][0]["value"]


async def test_a_reveal_interrupted_by_a_restart_resumes(fake, start_bot, zoo_hub):
    bot = await start_bot(predictions=GAME, trials=TRIALS)
    await open_round(fake, "game-lab/tiny-round")
    kai = fake.make_user(name="kai")
    await click(fake, "canrun:round:1:1:yes", kai)
    await bot.services.checker.check(RepoRef("game-lab/tiny-round"))  # the verdict cached: only the download is slow
    zoo_hub.slow_paths["tiny-round/resolve/"] = 30
    try:
        reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
        plan = await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
        assert "by trial #1" in plan.json["content"]
        await fake.wait_for_request("PATCH", "/messages/", predicate=lambda r: "downloading" in json.dumps(r.json))
        await bot.close()  # the trial dies with the bot; the round is closed, not revealed
        await asyncio.wait_for(bot.task, 30)
    finally:
        zoo_hub.slow_paths.clear()
    bot = await start_bot(predictions=GAME, trials=TRIALS)
    embed = await results_message(fake, timeout=60)
    assert f"loads**, by a real trial on {machine_name()}" in embed["description"]
    assert f"<@{kai['user']['id']}> **+16.00**" in embed["fields"][0]["value"]
    assert (await bot.services.trials.queue.get(1)).error == "interrupted by restart"

    async def reveal_done():  # the marker goes right after the results are posted
        return await bot.services.store.state_items("reveal_pending:") == []

    await eventually(reveal_done)


async def test_results_that_could_not_be_posted_are_posted_at_the_next_start(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    await open_round(fake, LOADS_REPO)
    await click(fake, "canrun:round:1:1:yes", fake.make_user(name="lou"))
    fake.fail_route("POST", f"/channels/{fake.channel_id}/messages", 403,
                    {"message": "Missing Permissions", "code": 50013})
    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    await fake.wait_for_request("POST", f"/channels/{fake.channel_id}/messages", predicate=lambda r: r.status == 403)
    assert (await game.get_round(bot.services.store, 1)).status == "revealed"  # settled; only the post is missing
    assert reveal.id and await bot.services.store.state_items("reveal_pending:") != []

    await bot.close()
    await asyncio.wait_for(bot.task, 30)
    bot = await start_bot(predictions=GAME)
    embed = await results_message(fake)
    assert "Round 1: results" in embed["title"]
    for _ in range(50):
        if await bot.services.store.state_items("reveal_pending:") == []:
            break
        await asyncio.sleep(0.05)
    assert await bot.services.store.state_items("reveal_pending:") == []


async def test_predict_autocompletes_repos_like_canrun(fake, start_bot):
    await start_bot(predictions=GAME)
    interaction = await fake.send_autocomplete("predict", {"repo": "mistral", "will_load": "yes"}, focused="repo")
    callback = await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")
    values = [c["value"] for c in callback.json["data"]["choices"]]
    assert "mistralai/Mistral-7B-v0.1" in values and len(values) <= 25


async def test_moderator_commands_explain_bad_input_privately(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    for options, sub, words in [
        ({}, "close", "No round is open here."),
        ({}, "reveal", "No round is in play here."),
        ({"repo": "not a repo!", "reason": "typo"}, "void", "org/name"),
        ({"repo": LOADS_REPO, "reason": "typo"}, "void", "There is no round here."),
    ]:
        tried = await fake.send_slash_command("round", options, subcommand=sub, user=fake.owner)
        assert words in await private_answer(fake, tried), (sub, options)
    started = await fake.send_slash_command("season", {"name": "Spring"}, subcommand="start", user=fake.owner)
    await answer_of(fake, started)
    again = await fake.send_slash_command("season", {"name": "Summer"}, subcommand="start", user=fake.owner)
    assert "Season Spring is running: end it first." in await private_answer(fake, again)
    assert (await game.active_season(bot.services.store, fake.guild_ids[0])).name == "Spring"  # nothing changed


async def canrun_row(bot, guild, repo, round_id=None):
    return await game.canrun_forecast(bot.services.store, guild, repo, round_id)


async def test_a_round_with_canruns_row_settled_by_a_trial_of_each_outcome(fake, start_bot):
    bot = await start_bot(predictions=GAME, trials=TRIALS)
    guild, lea = fake.guild_ids[0], fake.make_user(name="lea")
    await open_round(fake, "game-lab/tiny-round game-lab/tiny-broken")
    # canrun forecast both when the round opened; no trial has judged its verdicts yet, so each is its prior
    for repo in ("game-lab/tiny-round", "game-lab/tiny-broken"):
        row = await canrun_row(bot, guild, repo, 1)
        assert (row.verdict, row.p_loads, row.trials, row.status) == ("loads", 0.95, 0, "open")
    await click(fake, "canrun:round:1:1:yes", lea)
    await click(fake, "canrun:round:1:1:sure", lea, 90)
    await click(fake, "canrun:round:1:2:no", lea)
    await click(fake, "canrun:round:1:2:sure", lea, 60)
    hidden = [m for m in fake.messages.values() if "95%" in json.dumps(m)]
    assert hidden == []  # nothing shows canrun's forecast before the reveal

    reveal = await fake.send_slash_command("round", {}, subcommand="reveal", user=fake.owner)
    plan = await fake.wait_for_request("PATCH", f"{reveal.token}/messages/@original")
    assert "by trial #1" in plan.json["content"] and "by trial #2" in plan.json["content"]
    embed = await results_message(fake, timeout=120)
    text = embed["description"]
    # tiny-round loads: canrun +24.75; tiny-broken's truncated upload fails load(): 100(1 - 0.95²) - 75 = -65.25
    assert "✅" in text and "❌" in text
    assert "🤖 canrun: 95% loads (verdict `loads`, no trials yet: its verdict's prior) → **+24.75**" in text
    assert "🤖 canrun: 95% loads (verdict `loads`, no trials yet: its verdict's prior) → **-65.25**" in text
    # lea: yes at 90 % and it loads, +24; no at 60 % and it fails, +9; canrun -40.50 in all
    points = embed["fields"][0]["value"]
    assert f"1. <@{lea['user']['id']}> **+33.00** (vs group median 0.00, vs canrun +73.50)" in points
    assert points.index("<@") < points.index("🤖 canrun **-40.50** (the baseline, not ranked)")

    board = await fake.send_slash_command("leaderboard", {}, user=lea)
    lines = (await answer_of(fake, board))["embeds"][0]["description"].splitlines()
    assert lines[0].startswith("**1.**") and "vs canrun +73.50" in lines[0]
    assert lines[1] == "🤖 canrun **-40.50** · 50% right of 2 · the baseline, not ranked"
    stats = await fake.send_slash_command("mystats", {}, user=lea)
    answered = await fake.wait_for_request("POST", f"/interactions/{stats.id}/")
    assert "+73.50 on 2 it forecast too" in embed_text(answered.json["data"])
    # calibration by kind: both models were `loads` questions to canrun's verdict, and lea was right on both
    fields = {f["name"]: f["value"] for f in answered.json["data"]["embeds"][0]["fields"]}
    assert fields["Right, by kind of model"] == "loads: 100% (2 of 2)"

    # canrun's next forecast of a `loads` verdict learns from these two trials (each repo's own left out)
    said = await fake.send_slash_command("predict", {"repo": LOADS_REPO, "will_load": "yes"}, user=lea)
    await private_answer(fake, said)

    async def forecast_made():
        return await canrun_row(bot, guild, LOADS_REPO)

    row = await eventually(forecast_made, timeout=60)
    assert (row.verdict, row.trials, row.agreed, row.p_loads) == ("loads", 2, 1, round((9.5 + 1) / 12, 4))


async def test_predict_outside_rounds_gets_canruns_forecast_settled_by_canrun(fake, start_bot):
    bot = await start_bot(predictions=GAME)
    guild, max_ = fake.guild_ids[0], fake.make_user(name="max")
    said = await fake.send_slash_command("predict", {"repo": GGUF_REPO, "will_load": "yes", "confidence": 60},
                                         user=max_)
    await private_answer(fake, said)

    async def forecast_made():
        return await canrun_row(bot, guild, GGUF_REPO)

    row = await eventually(forecast_made, timeout=60)
    assert (row.verdict, row.p_loads, row.status) == ("unsupported_weights", 0.02, "open")
    checked = await fake.send_slash_command("canrun", {"repo": GGUF_REPO}, user=fake.make_user(name="nia"))
    await fake.wait_for_request("PATCH", f"{checked.token}/messages/@original",
                                predicate=lambda r: "Looking for" not in json.dumps(r.json))
    row = await canrun_row(bot, guild, GGUF_REPO)
    assert (row.status, row.outcome, row.points) == ("settled", False, 24.96)
    p = await game.get_prediction(bot.services.store, guild, int(max_["user"]["id"]), GGUF_REPO)
    assert (p.points, p.vs_canrun) == (-11.0, round(-11.0 - 24.96, 2))
