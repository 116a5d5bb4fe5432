"""canrun's record against trials: the computation (pure, by property), the trials it reads from a real SQLite
file, the owner's log line for each miss, `canrun record` and /canrun-record through the fake Discord."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli import main
from bot.core.canrun_record import (
    VERDICT_P_LOADS, JudgedTrial, miss_report, p_loads, record, version_key,
)
from bot.core.verdicts import ALL_VERDICTS, GATED, LOADS, NOT_FOUND, Verdict
from bot.services.canrun_record import canrun_record, judged_trials
from bot.services.game_events import GameEvents
from bot.services.store import Store, discover_migrations
from bot.services.trial_queue import QueueSettings, TrialQueue
from tests.conftest import seed_store
from tests.test_discord_bot import embed_text, fake, make_config, start_bot, within_limits  # noqa: F401 - fixtures

# ---- the computation (pure) ------------------------------------------------------------------------------------

VERSIONS = ["0.9.2", "0.10.0", "0.32.2", "unknown"]


# (repo, verdict, loaded, mlx-lm version, finished at, looked broken) of each trial
_TRIAL = st.tuples(st.integers(0, 5), st.sampled_from(ALL_VERDICTS), st.booleans(), st.sampled_from(VERSIONS),
                   st.integers(0, 10**6).map(float), st.none() | st.booleans())
TRIALS = st.lists(_TRIAL, max_size=40).map(lambda rows: [
    JudgedTrial(i, f"org/m{repo}", None, verdict, loaded, version, at, looks_broken=broken)
    for i, (repo, verdict, loaded, version, at, broken) in enumerate(rows)])
PROPERTY = settings(max_examples=60, deadline=None)


@PROPERTY
@given(TRIALS, st.integers(0, 8))
def test_the_record_adds_up(trials, latest):
    rec = record(trials, latest)
    scored = [t for t in trials if t.verdict not in (GATED, NOT_FOUND)]  # they say nothing about load()
    o = rec.overall
    assert o.trials == len(scored) == sum(v.trials for v in rec.versions)
    assert o.matched + o.missed == o.trials and o.matched == sum(v.matched for v in rec.versions)
    assert o.missed == sum(1 for t in scored if (t.verdict == LOADS) != t.loaded)
    assert o.looked_broken == sum(1 for t in scored if t.loaded and t.looks_broken)
    if scored:
        expected = sum((VERDICT_P_LOADS[t.verdict] - t.loaded) ** 2 for t in scored) / len(scored)
        assert o.brier == pytest.approx(expected) and 0 <= o.brier <= 1
        assert o.share == o.matched / o.trials
    else:
        assert (o.brier, o.share, rec.versions) == (None, None, ())
    # One row per version, the newest first, each over that version's trials only.
    assert [v.mlx_lm_version for v in rec.versions] == sorted({t.mlx_lm_version for t in scored}, key=version_key,
                                                              reverse=True)
    for v in rec.versions:
        mine = [t for t in scored if t.mlx_lm_version == v.mlx_lm_version]
        assert v.trials == len(mine)
        assert v.brier == pytest.approx(math.fsum(t.brier for t in mine) / len(mine))


@PROPERTY
@given(TRIALS, st.integers(0, 8))
def test_the_listed_misses_are_the_latest_ones(trials, latest):
    rec = record(trials, latest)
    for v in (rec.overall, *rec.versions):
        assert len(v.misses) == min(latest, v.missed)
        assert all(not t.matched and t.scored for t in v.misses)
        times = [t.finished_at for t in v.misses]
        assert times == sorted(times, reverse=True)
        unlisted = [t for t in trials if not t.matched and t.scored and t not in v.misses
                    and v.mlx_lm_version in (None, t.mlx_lm_version)]
        assert all(t.finished_at <= times[-1] for t in unlisted) if times else True


@PROPERTY
@given(TRIALS, st.randoms())
def test_the_order_trials_come_in_does_not_matter(trials, rnd):
    shuffled = list(trials)
    rnd.shuffle(shuffled)
    a, b = record(trials), record(shuffled)
    assert (a.overall.trials, a.overall.matched, a.overall.misses) == (b.overall.trials, b.overall.matched,
                                                                      b.overall.misses)
    assert a.overall.brier == pytest.approx(b.overall.brier) if a.overall.brier is not None else True
    assert [(v.mlx_lm_version, v.trials, v.misses) for v in a.versions] == \
        [(v.mlx_lm_version, v.trials, v.misses) for v in b.versions]


def test_each_verdict_is_a_probability_and_the_answers_are_not():
    assert p_loads(LOADS) == 0.95 and p_loads("unsupported_architecture") == 0.02
    assert p_loads("unsupported_quantization") == 0.1
    assert p_loads(GATED) is None and p_loads(NOT_FOUND) is None
    assert set(VERDICT_P_LOADS) | {GATED, NOT_FOUND} == set(ALL_VERDICTS)
    right = JudgedTrial(1, "o/m", None, LOADS, True, "0.32.2", 0.0)
    wrong = JudgedTrial(2, "o/m", None, LOADS, False, "0.32.2", 0.0)
    assert right.brier == pytest.approx(0.0025) and wrong.brier == pytest.approx(0.9025)
    assert version_key("0.10.0") > version_key("0.9.2") > version_key("unknown")


def test_a_miss_is_one_line_for_the_owner():
    miss = JudgedTrial(9, "org/model", "dev", LOADS, False, "0.32.2", 0.0,
                       error="Received 2 parameters not in model:\nlm_head.bias")
    assert miss_report(miss) == ("canrun's verdict missed: org/model@dev verdict loads, trial #9 load() failed: "
                                 "Received 2 parameters not in model: lm_head.bias, mlx-lm 0.32.2")
    surprise = JudgedTrial(10, "org/model", None, "unsupported_architecture", True, "0.33.0", 0.0)
    assert miss_report(surprise) == ("canrun's verdict missed: org/model verdict unsupported_architecture, trial #10 "
                                     "loaded, mlx-lm 0.33.0")
    assert miss_report(JudgedTrial(11, "org/model", None, LOADS, True, "0.32.2", 0.0, looks_broken=True)) is None


# ---- over a real SQLite file -------------------------------------------------------------------------------------

T = 1_700_000_000.0
SEEDED = [  # repo, verdict, loaded, verdict's mlx-lm (None: a trial from before it was kept), result, error
    ("lab/one", LOADS, 1, "0.32.2", {"mlx_lm_version": "0.32.2"}, None, None),
    ("lab/two", LOADS, 0, "0.32.2", {}, "Received 2 parameters not in model:\nlm_head.bias", None),
    ("lab/three", LOADS, 1, "0.32.2", {"mlx_lm_version": "0.32.2"}, None, 1),  # loaded, output looked broken
    ("lab/four", LOADS, 1, None, {"mlx_lm_version": "0.31.0"}, None, None),  # older row: the version it ran
    ("lab/five", LOADS, 0, "0.31.0", {}, "Missing 1 parameters: model.norm.weight", None),
    ("lab/six", LOADS, None, "0.31.0", {}, None, None),  # cancelled: it never judged load()
    ("lab/seven", None, 1, None, {}, None, None),  # no verdict kept
]


async def store_trials(store: Store, rows=SEEDED) -> None:
    """Finished trials as the queue leaves them, one a second from T."""
    async with store.transaction() as db:
        for i, (repo, verdict, loaded, version, result, error, broken) in enumerate(rows):
            status = {1: "succeeded", 0: "failed", None: "cancelled"}[loaded]
            await db.execute(
                "INSERT INTO trials (repo_id, requested_by, prompt, max_tokens, status, phase, loaded, error, result,"
                " verdict, verdict_mlx_lm_version, looks_broken, created_at, finished_at)"
                " VALUES (?, 1, 'hi', 8, ?, 'load', ?, ?, ?, ?, ?, ?, ?, ?)",
                (repo, status, loaded, error, json.dumps(result), verdict, version, broken, T, T + i))


async def test_the_record_reads_the_trials_that_judged_load(store):
    await store_trials(store)

    trials = await judged_trials(store)
    assert [t.repo_id for t in trials] == ["lab/one", "lab/two", "lab/three", "lab/four", "lab/five"]
    assert trials[3].mlx_lm_version == "0.31.0" and trials[2].looks_broken is True
    rec = await canrun_record(store)
    assert (rec.overall.trials, rec.overall.matched, rec.overall.looked_broken) == (5, 3, 1)
    assert rec.overall.brier == pytest.approx((3 * 0.05**2 + 2 * 0.95**2) / 5)
    assert [(v.mlx_lm_version, v.trials, v.matched, [t.repo_id for t in v.misses]) for v in rec.versions] == [
        ("0.32.2", 3, 2, ["lab/two"]), ("0.31.0", 2, 1, ["lab/five"])]
    assert [t.repo_id for t in rec.overall.misses] == ["lab/five", "lab/two"]  # latest first


async def test_a_queued_trial_keeps_what_its_verdict_rested_on(store):
    queue = TrialQueue(store, QueueSettings())
    verdict = Verdict(repo="lab/x", verdict=LOADS, sha="abc123", mlx_lm_version="0.32.2", checked_by="dry_load")
    trial = await queue.enqueue(repo_id="lab/x", revision=None, requested_by=1, guild_id=1, channel_id=2,
                                prompt="hi", max_tokens=4, verdict=verdict)
    assert (trial.verdict, trial.verdict_mlx_lm_version, trial.verdict_checked_by, trial.verdict_sha) == \
        (LOADS, "0.32.2", "dry_load", "abc123")
    bare = await queue.enqueue(repo_id="lab/y", revision=None, requested_by=1, guild_id=1, channel_id=2,
                               prompt="hi", max_tokens=4, verdict=LOADS)
    assert (bare.verdict, bare.verdict_mlx_lm_version) == (LOADS, None)


async def test_each_miss_is_logged_once_when_the_trial_settles(store, caplog):
    await store_trials(store)
    queue, events = TrialQueue(store, QueueSettings()), GameEvents(store)
    caplog.set_level(logging.INFO, logger="bot.services.canrun_record")
    for trial_id in range(1, len(SEEDED) + 1):
        await events.trial_ended(await queue.get(trial_id))

    warnings = [r for r in caplog.records if r.name == "bot.services.canrun_record"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "canrun's verdict missed: lab/two verdict loads, trial #2 load() failed: Received 2 parameters not in "
        "model: lm_head.bias, mlx-lm 0.32.2",
        "canrun's verdict missed: lab/five verdict loads, trial #5 load() failed: Missing 1 parameters: "
        "model.norm.weight, mlx-lm 0.31.0"]


# ---- `canrun record` --------------------------------------------------------------------------------------------


@pytest.fixture
def record_cli(tmp_path, capability_table, monkeypatch, capsys):
    """`canrun record ...` in-process against a database file holding SEEDED (or nothing, with seeded=False)."""
    db = tmp_path / "canrun.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{db}"\n')
    monkeypatch.setenv("CANRUN_CONFIG", str(config))

    def run(*args: str, seeded: bool = True) -> tuple[int, str, str]:
        async def seed():
            await seed_store(db, capability_table)
            if seeded:
                s = await Store.open(db)
                try:
                    await store_trials(s)
                finally:
                    await s.close()

        if not db.exists():
            asyncio.run(seed())
        code = main(["record", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_canrun_record_in_the_terminal(record_cli):
    code, out, err = record_cli()

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("canrun's record against the bot's trials: 5 trials, the verdict matched 3 (60%), "
                               "Brier score 0.36")
    assert lines[1] == ("The Brier score reads a verdict as the chance that load() succeeds (95% for loads; 10% for "
                        "unsupported_quantization; 2% for unsupported_architecture, unsupported_weights, no_config and "
                        "remote_code): 0 is perfect, 0.25 a coin flip.")
    assert "mlx-lm 0.32.2: 3 trials, the verdict matched 2 (67%), Brier score 0.302; 1 loaded but its output " \
           "looked broken" in lines
    assert any(line.startswith("  #2 lab/two (") and line.endswith(
        "verdict loads, load() failed: Received 2 parameters not in model: lm_head.bias") for line in lines)
    assert out.index("mlx-lm 0.32.2") < out.index("mlx-lm 0.31.0")  # the newest first


def test_canrun_record_as_json(record_cli):
    code, out, _ = record_cli("--json", "--misses", "0")

    assert code == 0
    data = json.loads(out)
    assert (data["trials"], data["matched"], data["missed"], data["looked_broken"]) == (5, 3, 2, 1)
    assert data["brier"] == pytest.approx(0.3625) and data["p_loads"]["loads"] == 0.95
    assert [(v["mlx_lm_version"], v["missed"], v["misses"]) for v in data["versions"]] == [
        ("0.32.2", 1, []), ("0.31.0", 1, [])]
    code, out, _ = record_cli("--json")
    miss = json.loads(out)["versions"][1]["misses"][0]
    assert (miss["repo"], miss["verdict"], miss["loaded"], miss["error"]) == (
        "lab/five", "loads", False, "Missing 1 parameters: model.norm.weight")


def test_canrun_record_with_no_trials_and_bad_options(record_cli):
    code, out, _ = record_cli(seeded=False)
    assert code == 0 and out.startswith("No trial has told whether load() succeeds yet")
    code, out, err = record_cli("--misses", "lots")
    assert code == 2 and out == "" and "expected a whole number from 0 to 50" in err


def test_canrun_record_neither_creates_nor_migrates_the_bots_database(tmp_path, monkeypatch, capsys):
    db = tmp_path / "canrun.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{db}"\n')
    monkeypatch.setenv("CANRUN_CONFIG", str(config))
    assert main(["record"]) == 2 and "there is no database at" in capsys.readouterr().err
    assert not db.exists()  # a mistyped path creates nothing

    async def older_canrun():  # the database as the previous version of canrun left it
        s = await Store.open(db)
        try:
            await s.migrate(discover_migrations()[:-1])
        finally:
            await s.close()

    asyncio.run(older_canrun())
    assert main(["record"]) == 2 and "needs 1 migration(s)" in capsys.readouterr().err

    async def applied() -> int:
        s = await Store.open(db)
        try:
            return len(await s.conn.execute_fetchall("SELECT version FROM schema_migrations"))
        finally:
            await s.close()

    assert asyncio.run(applied()) == len(discover_migrations()) - 1  # left for the bot to migrate


# ---- /canrun-record through the fake Discord ---------------------------------------------------------------------


async def test_canrun_record_in_discord(fake, start_bot):
    bot = await start_bot()
    await store_trials(bot.services.store, [*SEEDED, ("lab/<@everyone>", LOADS, 0, "0.32.2", {}, "**bold** <@123> `x`", None)])

    interaction = await fake.send_slash_command("canrun-record", {}, user=fake.make_user())
    answer = (await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")).json["data"]

    assert not answer.get("flags")  # public: the record is the group's
    assert answer["allowed_mentions"] == {"parse": []}
    within_limits(answer)
    embed = answer["embeds"][0]
    assert "6 trials, the verdict matched 3 (50%)" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert list(fields) == ["mlx-lm 0.32.2", "mlx-lm 0.31.0"]
    assert "4 trials, the verdict matched 2 (50%)" in fields["mlx-lm 0.32.2"]
    assert "lab/two" in fields["mlx-lm 0.32.2"] and "`Received 2 parameters not in model: lm_head.bias`" in fields["mlx-lm 0.32.2"]
    assert "lab/five" in fields["mlx-lm 0.31.0"] and "<t:" in fields["mlx-lm 0.31.0"]
    text = embed_text(answer)
    assert "<@everyone>" not in text and "<@123>" not in text  # a repo's name or error mentions nobody


async def test_canrun_record_in_discord_before_any_trial(fake, start_bot):
    await start_bot()
    interaction = await fake.send_slash_command("canrun-record", {}, user=fake.make_user())
    answer = (await fake.wait_for_request("POST", f"/interactions/{interaction.id}/")).json["data"]
    assert answer["embeds"][0]["description"].startswith("No trial has told whether load() succeeds yet")


def test_many_versions_stay_within_discords_limits():
    from bot.discord.record_render import record_embed

    trials = [JudgedTrial(i, f"org/{'m' * 90}{i}", None, LOADS, False, f"0.{i % 40}.0", float(i),
                          error="x" * 2000) for i in range(400)]
    embed = record_embed(record(trials))
    assert len(embed) <= 6000 and len(embed.fields) <= 25
    assert all(len(f.value) <= 1024 for f in embed.fields)
    assert embed.fields[0].name == "mlx-lm 0.39.0" and "older mlx-lm versions not shown" in embed.footer.text
