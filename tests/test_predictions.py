"""The prediction game against a real SQLite file: placements, locks, peeks, settlement, rounds, seasons,
leaderboard. Times are explicit (`at=`) so every rule about "before" and "after" is exact."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.canrun_forecast import forecast
from bot.core.scoring import Forecast, accuracy_of, calibration_of, mean_brier_of, streaks, tally
from bot.services import predictions as game
from bot.services.game_events import GameEvents
from bot.services.predictions import Refused
from bot.services.store import Store, discover_migrations

GUILD, OTHER_GUILD = 1, 2
T = 1_700_000_000.0


def predict(store, user, repo, will_load=True, confidence=70, *, at, round_id=None, guild=GUILD, **kw):
    return game.place_prediction(store, guild_id=guild, user_id=user, repo_id=repo, will_load=will_load,
                                 confidence=confidence, round_id=round_id, at=at, **kw)


async def saw_verdict(store, user, repo, at):
    """What /canrun records when a member sees a verdict (store.record_verdict, at a chosen time)."""
    async with store.transaction() as db:
        await db.execute("INSERT INTO verdict_history (repo_id, verdict, mlx_lm_version, source, user_id, payload,"
                         " created_at) VALUES (?, 'loads', '0.32', 'discord', ?, '{}', ?)", (repo, user, at))


async def table(store, sql, args=()):
    async with store.conn.execute(sql, args) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def snapshot(store):
    return {
        "predictions": await table(store, "SELECT * FROM predictions ORDER BY id"),
        "history": await table(store, "SELECT * FROM prediction_history ORDER BY id"),
        "standings": await table(store, "SELECT * FROM standings ORDER BY guild_id, season_id, user_id"),
        "round_repos": await table(store, "SELECT * FROM round_repos ORDER BY round_id, position"),
    }


async def assert_standings_match_a_rebuild(store, guild=GUILD):
    kept = await table(store, "SELECT * FROM standings WHERE guild_id = ? ORDER BY season_id, user_id", (guild,))
    await game.rebuild_standings(store, guild)
    assert kept == await table(store, "SELECT * FROM standings WHERE guild_id = ? ORDER BY season_id, user_id",
                               (guild,))


# ---- placing ----------------------------------------------------------------------------------------


async def test_one_live_prediction_per_member_and_repo_with_every_change_kept(store):
    first = await predict(store, 10, "o/a", True, 70, at=T)
    changed = await predict(store, 10, "o/a", False, 80, at=T + 1)
    same = await predict(store, 10, "o/a", False, 80, at=T + 2)  # no change: nothing recorded
    assert changed.id == first.id == same.id and (same.will_load, same.confidence) == (False, 80)
    assert (same.created_at, same.updated_at) == (T, T + 1)
    history = await game.prediction_history(store, first.id)
    assert [(h.change, h.will_load, h.confidence, h.at) for h in history] == [
        ("placed", True, 70, T), ("changed", False, 80, T + 1)]

    await predict(store, 10, "o/a", True, 60, at=T + 3, guild=OTHER_GUILD)  # another guild, another game
    await predict(store, 11, "o/a", True, 60, at=T + 3)
    assert await table(store, "SELECT guild_id, user_id, confidence FROM predictions ORDER BY id") == [
        (GUILD, 10, 80), (OTHER_GUILD, 10, 60), (GUILD, 11, 60)]
    # the schema itself refuses a second live row
    with pytest.raises(sqlite3.IntegrityError):
        async with store.transaction() as db:
            await db.execute("INSERT INTO predictions (guild_id, user_id, repo_id, will_load, confidence, status,"
                             " created_at, updated_at) VALUES (?, 10, 'o/a', 1, 70, 'open', ?, ?)", (GUILD, T, T))


async def test_confidence_is_validated(store):
    for bad in (49, 100):
        with pytest.raises(ValueError, match="confidence"):
            await predict(store, 10, "o/a", True, bad, at=T)
    assert await table(store, "SELECT * FROM predictions") == []


async def test_a_running_trial_locks_predictions_until_it_ends(store):
    mine = await predict(store, 10, "o/a", at=T)
    await predict(store, 10, "o/other", at=T)
    assert await game.lock_repo(store, "o/a", at=T + 1) == 1
    with pytest.raises(Refused, match="trial of o/a is running"):
        await predict(store, 10, "o/a", False, 90, at=T + 2)
    with pytest.raises(Refused, match="trial of o/a is running"):
        await predict(store, 11, "o/a", at=T + 2)  # nobody starts predicting during the trial either
    await predict(store, 10, "o/other", False, 90, at=T + 2)  # other repos are not affected
    assert (await game.get_prediction(store, GUILD, 10, "o/a")).status == "locked"

    # The trial could not tell (cancelled): the prediction reopens and can change again.
    assert await game.unlock_repo(store, "o/a", at=T + 3) == 1
    await predict(store, 10, "o/a", False, 90, at=T + 4)
    assert [h.change for h in await game.prediction_history(store, mine.id)] == [
        "placed", "locked", "unlocked", "changed"]


async def test_a_trial_whose_end_was_recorded_but_not_settled_before_a_crash_settles_at_the_restart(store):
    await predict(store, 10, "o/a", False, 90, at=T)
    await predict(store, 11, "o/b", True, 70, at=T)
    await game.lock_repo(store, "o/a", at=T + 1)
    await game.lock_repo(store, "o/b", at=T + 1)
    async with store.transaction() as db:  # o/a's trial ended (the queue's record), then the bot died
        await db.execute("INSERT INTO trials (repo_id, requested_by, prompt, max_tokens, status, loaded, created_at,"
                         " started_at, finished_at) VALUES ('o/a', 1, 'hi', 4, 'failed', 0, ?, ?, ?)",
                         (T + 0.5, T + 1, T + 2))
    await store.close()
    restarted = await Store.open_migrated(store.path)  # o/b's trial died unfinished (the queue marks it failed)
    try:
        assert await GameEvents(restarted).recover() == ["o/a", "o/b"]
        a = await game.get_prediction(restarted, GUILD, 10, "o/a")
        assert (a.status, a.settled_by, a.outcome, a.points, a.settled_at) == ("settled", "trial", False, 24.0, T + 2)
        assert (await game.get_prediction(restarted, GUILD, 11, "o/b")).status == "open"
        assert await game.repo_locks(restarted) == []
        # A later verdict saying the opposite changes nothing: the trial had answered.
        await game.settle_repo(restarted, GUILD, "o/a", True, "verdict", at=T + 10)
        assert (await game.get_prediction(restarted, GUILD, 10, "o/a")).points == 24.0
    finally:
        await restarted.close()


async def test_a_stale_lock_whose_settlement_fails_does_not_keep_the_bot_from_starting(store, monkeypatch, caplog):
    await predict(store, 10, "o/a", at=T)
    await game.lock_repo(store, "o/a", at=T + 1)
    async with store.transaction() as db:
        await db.execute("INSERT INTO trials (repo_id, requested_by, prompt, max_tokens, status, loaded, created_at,"
                         " started_at, finished_at) VALUES ('o/a', 1, 'hi', 4, 'succeeded', 1, ?, ?, ?)",
                         (T, T + 1, T + 2))

    async def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database disk image is malformed")

    monkeypatch.setattr(game, "settle_repo", broken)  # fault injection
    assert await GameEvents(store).recover() == ["o/a"]
    assert "could not settle o/a by its last trial" in caplog.text and await game.repo_locks(store) == []


async def test_a_trial_that_judged_settles_the_locked_predictions_in_every_guild(store):
    await predict(store, 10, "o/a", True, 90, at=T)
    await predict(store, 10, "o/a", False, 60, at=T, guild=OTHER_GUILD)
    assert await game.lock_repo(store, "o/a", at=T + 1) == 2
    assert await game.settle_repo(store, None, "o/a", True, "trial", at=T + 2) == game.Settlement(2, 0, 0)
    assert await game.unlock_repo(store, "o/a", at=T + 3) == 0
    p = await game.get_prediction(store, GUILD, 10, "o/a")
    assert (p.status, p.settled_by, p.points, p.outcome) == ("settled", "trial", 24.0, True)
    assert (await game.get_prediction(store, OTHER_GUILD, 10, "o/a")).points == -11.0
    assert [r.user_id for r in (await game.leaderboard(store, OTHER_GUILD, min_settled=1)).rows] == [10]
    with pytest.raises(Refused, match="already settled"):
        await predict(store, 10, "o/a", False, 90, at=T + 4)


# ---- peeking ----------------------------------------------------------------------------------------


async def test_predicting_after_seeing_the_verdict_is_peeked_and_does_not_score(store):
    await saw_verdict(store, 10, "o/a", at=T - 5)
    await saw_verdict(store, 11, "o/a", at=T + 100)  # sees it only later
    peeker = await predict(store, 10, "o/a", True, 99, at=T)
    honest = await predict(store, 11, "o/a", True, 60, at=T)
    assert peeker.peeked and not honest.peeked
    assert await game.seen_at(store, 10, "o/a") == T - 5
    assert await game.seen_at(store, 12, "o/a") is None

    await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 10)
    peeker = await game.get_prediction(store, GUILD, 10, "o/a")
    honest = await game.get_prediction(store, GUILD, 11, "o/a")
    assert (peeker.status, peeker.outcome, peeker.points, peeker.relative_points) == ("settled", True, None, None)
    assert (honest.points, honest.relative_points) == (9.0, 0.0)  # alone in the group: the median is their own
    board = await game.leaderboard(store, GUILD, min_settled=1)
    assert [r.user_id for r in board.rows] == [11]
    stats = await game.member_stats(store, GUILD, 10, min_settled=1)
    assert (stats.settled, stats.peeked, stats.points, stats.rank) == (0, 1, 0, None)


async def test_changing_after_seeing_marks_peeked_for_good(store):
    await predict(store, 10, "o/a", False, 70, at=T)
    await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/r"], at=T)
    rnd = await game.current_round(store, GUILD)
    await predict(store, 10, "o/r", False, 70, at=T, round_id=rnd.id)
    await saw_verdict(store, 10, "o/r", at=T + 1)
    changed = await predict(store, 10, "o/r", True, 95, at=T + 2, round_id=rnd.id)
    assert changed.peeked
    again = await predict(store, 10, "o/r", False, 60, at=T + 3, round_id=rnd.id)
    assert again.peeked
    assert not (await game.get_prediction(store, GUILD, 10, "o/a")).peeked


async def test_trial_sightings_come_from_an_extra_source(store):
    async def trial_sightings(user_id, repo_id):
        return T - 1 if (user_id, repo_id) == (10, "o/a") else None

    assert (await predict(store, 10, "o/a", at=T, also_seen=trial_sightings)).peeked
    assert (await predict(store, 10, "o/a", False, 60, at=T + 1)).peeked  # once peeked, always peeked
    assert not (await predict(store, 11, "o/a", at=T, also_seen=trial_sightings)).peeked
    # Any table with (repo, user, time) columns is a sighting source, e.g. who requested a trial.
    async with store.transaction() as db:
        await db.execute("INSERT INTO trials (repo_id, requested_by, prompt, max_tokens, status, created_at)"
                         " VALUES ('o/b', 12, 'hi', 4, 'succeeded', ?)", (T - 1,))
    requests = game.SightingSource("trials", "repo_id", "requested_by", "created_at")
    assert (await predict(store, 12, "o/b", at=T, sources=(game.VERDICT_SIGHTINGS, requests))).peeked


# ---- settlement -------------------------------------------------------------------------------------


async def test_settling_twice_never_scores_twice(store):
    await predict(store, 10, "o/a", True, 80, at=T)
    await predict(store, 11, "o/a", False, 90, at=T)
    first = await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 10)
    after_first = await snapshot(store)
    again = await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 10)
    assert (first, again) == (game.Settlement(2, 0, 0), game.Settlement(0, 0, 0))
    assert await snapshot(store) == after_first
    points = await table(store, "SELECT user_id, points, relative_points FROM predictions ORDER BY user_id")
    assert points == [(10, 21.0, 38.5), (11, -56.0, -38.5)]  # the median is -17.5
    assert await table(store, "SELECT COUNT(*) FROM prediction_history WHERE change = 'settled'") == [(2,)]


async def test_concurrent_settlements_score_once(store):
    for user in range(20):
        await predict(store, user, "o/a", True, 60 + user, at=T)
    results = await asyncio.gather(*(game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 10)
                                     for _ in range(5)))
    assert sorted(r.settled for r in results) == [0, 0, 0, 0, 20]
    assert await table(store, "SELECT COUNT(*) FROM prediction_history WHERE change = 'settled'") == [(20,)]
    await assert_standings_match_a_rebuild(store)


async def test_only_predictions_made_before_the_event_settle(store):
    await predict(store, 10, "o/a", at=T)
    await predict(store, 11, "o/a", at=T + 20)  # after the /canrun at T + 10
    await predict(store, 12, "o/a", at=T, guild=OTHER_GUILD)  # the /canrun was in another guild
    assert (await game.settle_repo(store, GUILD, "o/a", False, "verdict", at=T + 10)).settled == 1
    statuses = await table(store, "SELECT user_id, status FROM predictions ORDER BY user_id")
    assert statuses == [(10, "settled"), (11, "open"), (12, "open")]


async def test_a_disagreeing_trial_resettles_a_verdict_settlement_once(store):
    p = await predict(store, 10, "o/a", True, 90, at=T)
    await game.settle_repo(store, GUILD, "o/a", False, "verdict", at=T + 10)
    assert (await game.get_prediction(store, GUILD, 10, "o/a")).points == -56.0

    assert await game.settle_repo(store, GUILD, "o/a", True, "trial", at=T + 20) == game.Settlement(0, 0, 1)
    p = await game.get_prediction(store, GUILD, 10, "o/a")
    assert (p.outcome, p.settled_by, p.points, p.resettled, p.settled_at) == (True, "trial", 24.0, True, T + 20)
    # a later trial that disagrees again changes nothing: re-settled once, and a trial's settlement is final
    assert await game.settle_repo(store, GUILD, "o/a", False, "trial", at=T + 30) == game.Settlement(0, 0, 0)
    assert (await game.get_prediction(store, GUILD, 10, "o/a")).points == 24.0
    history = await game.prediction_history(store, p.id)
    assert [(h.change, h.outcome, h.points) for h in history] == [
        ("placed", None, None), ("settled", False, -56.0), ("resettled", True, 24.0)]
    await assert_standings_match_a_rebuild(store)


async def test_an_agreeing_trial_confirms_and_makes_the_settlement_final(store):
    await predict(store, 10, "o/a", True, 90, at=T)
    await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 10)
    assert await game.settle_repo(store, GUILD, "o/a", True, "trial", at=T + 20) == game.Settlement(0, 1, 0)
    assert await game.settle_repo(store, GUILD, "o/a", False, "trial", at=T + 30) == game.Settlement(0, 0, 0)
    p = await game.get_prediction(store, GUILD, 10, "o/a")
    assert (p.outcome, p.settled_by, p.points, p.resettled, p.settled_at) == (True, "trial", 24.0, False, T + 10)


async def test_source_must_be_trial_or_verdict(store):
    with pytest.raises(ValueError, match="source"):
        await game.settle_repo(store, GUILD, "o/a", True, "guess", at=T)


# ---- rounds -----------------------------------------------------------------------------------------


async def test_round_flow_open_predict_close_reveal(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/b", "o/c"],
                                closes_at=T + 100, channel_id=5, at=T)
    assert (rnd.status, [r.repo_id for r in rnd.repos]) == ("open", ["o/a", "o/b", "o/c"])
    with pytest.raises(Refused, match="already in play"):
        await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/d"], at=T)
    for user, (wa, wb, wc) in {10: (True, True, False), 11: (False, True, True), 12: (True, False, False)}.items():
        for repo, will_load in zip(("o/a", "o/b", "o/c"), (wa, wb, wc), strict=True):
            await predict(store, user, repo, will_load, 80, at=T + 1, round_id=rnd.id)
    with pytest.raises(Refused, match="not in round"):
        await predict(store, 10, "o/zzz", at=T + 2, round_id=rnd.id)
    await predict(store, 10, "o/a", True, 90, at=T + 2, round_id=rnd.id)  # changeable while open
    with pytest.raises(Refused, match="Close round"):
        await game.reveal_round(store, rnd.id, {}, at=T + 3)

    closed = await game.close_round(store, rnd.id, at=T + 50)
    assert (closed.status, closed.closed_at) == ("closed", T + 50)
    with pytest.raises(Refused, match="is closed"):
        await predict(store, 10, "o/a", False, 90, at=T + 51, round_id=rnd.id)
    with pytest.raises(Refused, match="is closed"):
        await predict(store, 13, "o/b", at=T + 51, round_id=rnd.id)
    with pytest.raises(ValueError, match="needs outcomes"):
        await game.reveal_round(store, rnd.id, {"o/a": (True, "trial")}, at=T + 60)

    outcomes = {"o/a": (True, "trial"), "o/b": (True, "verdict"), "o/c": (False, "verdict")}
    results = await game.reveal_round(store, rnd.id, outcomes, at=T + 60)
    assert results.round.status == "revealed"
    assert [(r.repo_id, r.outcome, r.settled_by) for r in results.round.repos] == [
        ("o/a", True, "trial"), ("o/b", True, "verdict"), ("o/c", False, "verdict")]
    # 90 % right: 24; 80 % right: 21; 80 % wrong: -39. The median of every repo is 21. Best first.
    assert [(m.user_id, m.points, m.relative_points, m.scored) for m in results.members] == [
        (10, 24 + 21 + 21, 3 + 0 + 0, 3), (12, 21 - 39 + 21, 0 - 60 + 0, 3), (11, -39 + 21 - 39, -60 + 0 - 60, 3)]

    # revealing again changes nothing, whatever it is told
    before = await snapshot(store)
    again = await game.reveal_round(store, rnd.id, {r: (not o, s) for r, (o, s) in outcomes.items()}, at=T + 70)
    assert again == results and await snapshot(store) == before
    assert await game.current_round(store, GUILD) is None
    await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/d"], at=T + 80)  # the next round


async def test_round_rules(store):
    with pytest.raises(Refused, match="1 to 5"):
        await game.open_round(store, guild_id=GUILD, opened_by=1, repos=[f"o/{i}" for i in range(6)], at=T)
    with pytest.raises(Refused, match="1 to 5"):
        await game.open_round(store, guild_id=GUILD, opened_by=1, repos=[], at=T)
    with pytest.raises(Refused, match="twice"):
        await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/a"], at=T)
    with pytest.raises(Refused, match="before it opens"):
        await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a"], closes_at=T - 1, at=T)
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a"], closes_at=T + 10, at=T)
    with pytest.raises(Refused, match="no such round"):
        await predict(store, 10, "o/a", at=T + 1, round_id=rnd.id, guild=OTHER_GUILD)
    with pytest.raises(Refused, match="is closed"):  # past closes_at, even before anyone closes it
        await predict(store, 10, "o/a", at=T + 10, round_id=rnd.id)
    await predict(store, 10, "o/a", at=T + 1, round_id=rnd.id)
    await predict(store, 10, "o/a", at=T + 1)  # outside the round: a separate prediction
    assert len(await table(store, "SELECT id FROM predictions WHERE user_id = 10")) == 2
    await game.close_round(store, rnd.id, at=T + 11)
    with pytest.raises(Refused, match="not open"):
        await game.close_round(store, rnd.id, at=T + 12)


async def test_verdict_settlement_outside_rounds_leaves_round_predictions_alone(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a"], at=T)
    await predict(store, 10, "o/a", True, 80, at=T + 1, round_id=rnd.id)
    await predict(store, 10, "o/a", True, 80, at=T + 1)
    assert (await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 5)).settled == 1
    assert (await game.get_prediction(store, GUILD, 10, "o/a", rnd.id)).status == "open"


async def test_a_trial_resettles_a_round_revealed_by_verdict(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/b"], at=T)
    for user, conf in ((10, 90), (11, 60), (12, 70)):
        await predict(store, user, "o/a", False, conf, at=T + 1, round_id=rnd.id)
        await predict(store, user, "o/b", True, conf, at=T + 1, round_id=rnd.id)
    await game.close_round(store, rnd.id, at=T + 2)
    await game.reveal_round(store, rnd.id, {"o/a": (False, "verdict"), "o/b": (True, "trial")}, at=T + 3)
    assert await game.settle_repo(store, GUILD, "o/a", True, "trial", at=T + 10) == game.Settlement(0, 0, 3)
    assert await game.settle_repo(store, GUILD, "o/b", False, "trial", at=T + 10) == game.Settlement(0, 0, 0)
    results = await game.round_results(store, rnd.id)
    assert [(r.outcome, r.settled_by) for r in results.round.repos] == [(True, "trial"), (True, "trial")]
    rel = await table(store, "SELECT user_id, points, relative_points FROM predictions WHERE repo_id = 'o/a'"
                             " ORDER BY user_id")
    assert rel == [(10, -56.0, -32.0), (11, -11.0, 13.0), (12, -24.0, 0.0)]  # the median is -24
    await assert_standings_match_a_rebuild(store)


async def test_voiding_a_round_repo_touches_nothing_else(store):
    await predict(store, 10, "o/a", True, 80, at=T)  # outside the round, on the same repo
    await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 1)
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/b"], at=T + 2)
    for user in (10, 11, 12):
        await predict(store, user, "o/a", user != 11, 75, at=T + 3, round_id=rnd.id)
        await predict(store, user, "o/b", user == 11, 85, at=T + 3, round_id=rnd.id)
    await game.close_round(store, rnd.id, at=T + 4)
    await game.reveal_round(store, rnd.id, {"o/a": (True, "verdict"), "o/b": (False, "trial")}, at=T + 5)
    # the round is its own group for relative points: the outside prediction on o/a stays alone in its group
    assert await table(store, "SELECT user_id, round_id IS NULL, points, relative_points FROM predictions"
                              " WHERE repo_id = 'o/a' ORDER BY id") == [
        (10, 1, 21.0, 0.0), (10, 0, 18.75, 0.0), (11, 0, -31.25, -50.0), (12, 0, 18.75, 0.0)]
    before = await snapshot(store)

    assert await game.void_round_repo(store, rnd.id, "o/a", reason="the verdict was wrong", voided_by=1,
                                      at=T + 6) == 3
    after = await snapshot(store)
    voided = {r[0] for r in await table(store, "SELECT id FROM predictions WHERE round_id = ? AND repo_id = 'o/a'",
                                        (rnd.id,))}
    assert [p for p in after["predictions"] if p[0] not in voided] == [
        p for p in before["predictions"] if p[0] not in voided]
    assert after["history"][:len(before["history"])] == before["history"]
    for p in await table(store, "SELECT status, points, relative_points FROM predictions WHERE id IN (?, ?, ?)",
                         tuple(voided)):
        assert p == ("void", None, None)
    repos = (await game.get_round(store, rnd.id)).repos
    assert [(r.repo_id, r.void_reason) for r in repos] == [("o/a", "the verdict was wrong"), ("o/b", None)]
    results = await game.round_results(store, rnd.id)
    assert all(m.scored == 1 for m in results.members)
    with pytest.raises(Refused, match="already void"):
        await game.void_round_repo(store, rnd.id, "o/a", reason="again", voided_by=1, at=T + 7)
    await assert_standings_match_a_rebuild(store)


async def test_a_repo_voided_before_reveal_needs_no_outcome_and_takes_no_predictions(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/b"], at=T)
    await predict(store, 10, "o/a", at=T + 1, round_id=rnd.id)
    await predict(store, 10, "o/b", at=T + 1, round_id=rnd.id)
    with pytest.raises(Refused, match="Say why"):
        await game.void_round_repo(store, rnd.id, "o/a", reason="  ", voided_by=1, at=T + 2)
    await game.void_round_repo(store, rnd.id, "o/a", reason="gated since", voided_by=1, at=T + 2)
    with pytest.raises(Refused, match="voided in round"):
        await predict(store, 11, "o/a", at=T + 3, round_id=rnd.id)
    with pytest.raises(Refused, match="was voided"):
        await predict(store, 10, "o/a", False, 60, at=T + 3, round_id=rnd.id)
    await game.close_round(store, rnd.id, at=T + 4)
    results = await game.reveal_round(store, rnd.id, {"o/b": (True, "trial")}, at=T + 5)
    assert [(m.user_id, m.points, m.scored) for m in results.members] == [(10, 16.0, 1)]


async def test_a_restart_between_open_and_reveal_loses_nothing(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    await store.migrate()
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/b"], closes_at=T + 100, at=T)
    await predict(store, 10, "o/a", True, 90, at=T + 1, round_id=rnd.id)
    await store.close()

    store = await Store.open(path)
    assert await store.migrate() == []
    assert (await game.current_round(store, GUILD)) == rnd
    await predict(store, 11, "o/a", False, 90, at=T + 2, round_id=rnd.id)
    await predict(store, 10, "o/b", True, 70, at=T + 2, round_id=rnd.id)
    await game.close_round(store, rnd.id, at=T + 3)
    await store.close()

    store = await Store.open(path)
    with pytest.raises(Refused, match="is closed"):
        await predict(store, 11, "o/a", True, 90, at=T + 4, round_id=rnd.id)
    results = await game.reveal_round(store, rnd.id, {"o/a": (True, "trial"), "o/b": (True, "verdict")}, at=T + 5)
    assert [(m.user_id, m.points) for m in results.members] == [(10, 24 + 16), (11, -56.0)]
    await store.close()


async def test_concurrent_placements_are_consistent(store):
    users, repos = range(40), ("o/a", "o/b", "o/c")
    await asyncio.gather(*(predict(store, u, r, (u + i) % 2 == 0, 50 + (u * 7 + i) % 50, at=T + i)
                           for i in range(3) for u in users for r in repos))
    live = await table(store, "SELECT id, will_load, confidence FROM predictions")
    assert len(live) == len(users) * len(repos)
    # each live row equals the last entry of its history, and the history holds every change
    for prediction_id, will_load, confidence in live:
        history = await game.prediction_history(store, prediction_id)
        assert history[0].change == "placed" and all(h.change == "changed" for h in history[1:])
        assert (history[-1].will_load, history[-1].confidence) == (bool(will_load), confidence)
    changes = await table(store, "SELECT COUNT(*) FROM prediction_history")
    assert changes[0][0] <= 3 * len(users) * len(repos)


# ---- leaderboard and stats --------------------------------------------------------------------------


async def score(store, user, repo, will_load, confidence, outcome, *, made, settled, guild=GUILD):
    await predict(store, user, repo, will_load, confidence, at=made, guild=guild)
    await game.settle_repo(store, guild, repo, outcome, "verdict", at=settled)


async def test_leaderboard_order_tie_break_and_min_settled(store):
    # 10 and 11 both end on 48 points; 11 reached it first. 12 has most points but too few predictions.
    await score(store, 10, "o/1", True, 90, True, made=T, settled=T + 1)
    await score(store, 11, "o/2", True, 90, True, made=T, settled=T + 2)
    await score(store, 11, "o/3", True, 90, True, made=T, settled=T + 3)
    await score(store, 10, "o/4", True, 90, True, made=T, settled=T + 4)
    await score(store, 13, "o/5", False, 99, True, made=T, settled=T + 5)
    await score(store, 13, "o/6", True, 50, True, made=T, settled=T + 6)
    await score(store, 12, "o/7", True, 99, True, made=T, settled=T + 7)

    board = await game.leaderboard(store, GUILD, min_settled=2)
    assert [(r.rank, r.user_id, r.points, r.settled, r.reached_at) for r in board.rows] == [
        (1, 11, 48.0, 2, T + 3), (2, 10, 48.0, 2, T + 4), (3, 13, -73.01, 2, T + 6)]
    assert (board.members, board.pages) == (3, 1)
    assert board.rows[2].accuracy == 0.5
    assert [r.user_id for r in (await game.leaderboard(store, GUILD, min_settled=1)).rows] == [11, 10, 12, 13]

    page2 = await game.leaderboard(store, GUILD, min_settled=1, page=2, page_size=3)
    assert [(r.rank, r.user_id) for r in page2.rows] == [(4, 13)] and page2.pages == 2
    for row in (await game.leaderboard(store, GUILD, min_settled=1)).rows:
        assert (await game.member_stats(store, GUILD, row.user_id, min_settled=1)).rank == row.rank
    assert (await game.member_stats(store, GUILD, 12, min_settled=2)).rank is None
    assert (await game.leaderboard(store, OTHER_GUILD, min_settled=1)).rows == []
    with pytest.raises(ValueError):
        await game.leaderboard(store, GUILD, page=0)


async def test_member_stats(store):
    plan = [(True, 95, True), (True, 85, True), (False, 55, True), (True, 75, True), (True, 65, True),
            (False, 92, False)]
    for i, (will_load, confidence, outcome) in enumerate(plan):
        await score(store, 10, f"o/{i}", will_load, confidence, outcome, made=T, settled=T + i + 1)
    await predict(store, 10, "o/pending", at=T)

    stats = await game.member_stats(store, GUILD, 10, min_settled=1)
    assert (stats.settled, stats.correct, stats.pending, stats.rank) == (6, 5, 1, 1)
    assert stats.accuracy == pytest.approx(5 / 6)
    assert (stats.current_streak, stats.best_streak) == (3, 3)
    assert [(b.low, b.count, b.correct) for b in stats.calibration] == [
        (50, 1, 0), (60, 1, 1), (70, 1, 1), (80, 1, 1), (90, 2, 2)]
    assert stats.points == round(24.75 + 22.75 - 5.25 + 18.75 + 12.75 + 24.36, 2)
    assert stats.mean_brier == pytest.approx((0.0025 + 0.0225 + 0.3025 + 0.0625 + 0.1225 + 0.0064) / 6)
    empty = await game.member_stats(store, GUILD, 99)
    assert (empty.settled, empty.accuracy, empty.mean_brier, empty.rank) == (0, None, None, None)


async def test_seasons(store):
    await score(store, 10, "o/before", True, 90, True, made=T, settled=T + 1)  # no season yet: all time only
    s1 = await game.start_season(store, GUILD, " Spring ", at=T + 10)
    assert (s1.name, await game.active_season(store, GUILD)) == ("Spring", s1)
    with pytest.raises(Refused, match="Spring is running"):
        await game.start_season(store, GUILD, "Summer", at=T + 11)
    # made before the season, settled during it: it belongs to the season (season of settlement)
    await score(store, 10, "o/s1", True, 80, True, made=T, settled=T + 20)
    await score(store, 11, "o/s1b", True, 80, False, made=T + 15, settled=T + 21)
    await game.end_season(store, GUILD, at=T + 30)
    with pytest.raises(Refused, match="No season"):
        await game.end_season(store, GUILD, at=T + 31)
    with pytest.raises(Refused, match="already a season called Spring"):
        await game.start_season(store, GUILD, "Spring", at=T + 32)
    s2 = await game.start_season(store, GUILD, "Summer", at=T + 40)
    await score(store, 11, "o/s2", True, 70, True, made=T + 35, settled=T + 50)

    assert await game.season_by_name(store, GUILD, "Spring") == game.Season(s1.id, GUILD, "Spring", T + 10, T + 30)
    spring = await game.leaderboard(store, GUILD, season_id=s1.id, min_settled=1)
    summer = await game.leaderboard(store, GUILD, season_id=s2.id, min_settled=1)
    all_time = await game.leaderboard(store, GUILD, min_settled=1)
    assert [(r.user_id, r.points) for r in spring.rows] == [(10, 21.0), (11, -39.0)]
    assert [(r.user_id, r.points) for r in summer.rows] == [(11, 16.0)]
    assert [(r.user_id, r.points) for r in all_time.rows] == [(10, 45.0), (11, -23.0)]
    stats = await game.member_stats(store, GUILD, 10, season_id=s1.id, min_settled=1)
    assert (stats.settled, stats.points, stats.rank) == (1, 21.0, 1)

    # a trial overturning a Spring settlement during Summer changes Spring's points, not Summer's
    await game.settle_repo(store, GUILD, "o/s1b", True, "trial", at=T + 60)
    spring = await game.leaderboard(store, GUILD, season_id=s1.id, min_settled=1)
    assert [(r.user_id, r.points) for r in spring.rows] == [(10, 21.0), (11, 21.0)]
    assert [(r.user_id, r.points) for r in (await game.leaderboard(store, GUILD, season_id=s2.id,
                                                                   min_settled=1)).rows] == [(11, 16.0)]
    await assert_standings_match_a_rebuild(store)


async def test_latest_round_prefers_the_one_in_play_else_the_last_revealed(store):
    assert await game.latest_round(store, GUILD) is None
    first = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a"], at=T)
    await game.close_round(store, first.id, at=T + 1)
    await game.reveal_round(store, first.id, {"o/a": (True, "verdict")}, at=T + 2)
    assert (await game.latest_round(store, GUILD)).id == first.id
    second = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/b"], at=T + 3)
    assert (await game.latest_round(store, GUILD)).id == second.id
    assert await game.latest_round(store, OTHER_GUILD) is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(50, 99), st.booleans()), min_size=0, max_size=40), st.randoms())
def test_member_stats_agree_with_the_pure_scoring_functions(history, rnd):
    """member_stats aggregates in SQL (one string of codes in settlement order): it must say exactly what
    scoring.py says of the same predictions in settlement order, which here is not the order they were placed in."""
    settle_order = list(range(len(history)))
    rnd.shuffle(settle_order)
    forecasts = [Forecast(*history[i]) for i in settle_order]

    async def stats():
        with tempfile.TemporaryDirectory() as tmp:
            store = await Store.open(Path(tmp) / "db.sqlite3")
            await store.migrate()
            for i, (will_load, confidence, _) in enumerate(history):
                await predict(store, 7, f"o/r{i}", will_load, confidence, at=T + i)
            for position, i in enumerate(settle_order):
                await game.settle_repo(store, GUILD, f"o/r{i}", history[i][2], "verdict", at=T + 100 + position)
            result = await game.member_stats(store, GUILD, 7, min_settled=1)
            await store.close()
            return result

    got = asyncio.run(stats())
    assert (got.current_streak, got.best_streak) == streaks(f.correct for f in forecasts)
    counts = tally(forecasts)
    assert got.calibration == calibration_of(counts)
    assert got.settled == len(forecasts) and got.correct == sum(f.correct for f in forecasts)
    assert got.accuracy == accuracy_of(counts)
    assert got.mean_brier == pytest.approx(mean_brier_of(counts)) if forecasts else got.mean_brier is None


_OPS = st.one_of(
    st.tuples(st.just("predict"), st.sampled_from([7, 8, 9]), st.integers(0, 2), st.booleans(), st.integers(50, 99),
              st.booleans()),
    st.tuples(st.just("verdict"), st.integers(0, 2), st.booleans(), st.sampled_from([0, 25])),
    st.tuples(st.just("trial"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("season")),
    st.tuples(st.just("round"), st.booleans(), st.booleans(), st.booleans()),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_OPS, max_size=30))
def test_the_triggers_keep_standings_and_tallies_as_a_rebuild_would(ops):
    """Whatever happens in whatever order (late settlements, trials overturning verdicts, voids, seasons, peeks),
    the standings and tallies the triggers keep equal a rebuild from the predictions, and each member's streaks
    equal scoring.streaks over their scoring predictions in settlement order."""

    async def play():
        with tempfile.TemporaryDirectory() as tmp:
            store = await Store.open(Path(tmp) / "db.sqlite3")
            try:
                return await play_in(store)
            finally:
                await store.close()

    async def play_in(store):
        await store.migrate()
        now, rounds = T, 0
        for repo, verdict in (("o/r0", "loads"), ("o/r1", "unsupported_architecture")):  # o/r2: canrun has none
            await game.record_forecast(store, guild_id=GUILD, repo_id=repo, round_id=None,
                                       forecast=forecast(verdict, {}), at=T)
        for op in ops:
            now += 10
            try:
                if op[0] == "predict":
                    _, user, repo, will_load, confidence, peek = op
                    if peek:
                        await saw_verdict(store, user, f"o/r{repo}", now - 1)
                    await predict(store, user, f"o/r{repo}", will_load, confidence, at=now)
                elif op[0] in ("verdict", "trial"):
                    guild, back = (GUILD, op[3]) if op[0] == "verdict" else (None, 0)
                    await game.settle_repo(store, guild, f"o/r{op[1]}", op[2], op[0], at=now - back)
                elif op[0] == "season":
                    if await game.active_season(store, GUILD):
                        await game.end_season(store, GUILD, at=now)
                    else:
                        await game.start_season(store, GUILD, f"s{now}", at=now)
                else:
                    _, first, second, void = op
                    rounds += 1
                    # a voided repo alone in its round was its members' latest settlement
                    repos = [f"o/round{rounds}-a"] + ([] if void else ["o/r0"])
                    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=repos, at=now)
                    for repo in repos:
                        await game.record_forecast(store, guild_id=GUILD, repo_id=repo, round_id=rnd.id,
                                                   forecast=forecast("loads", {}), fit="too_large", at=now)
                    for user in (7, 8, 9):
                        for k, repo in (enumerate(repos) if user != 8 else reversed(list(enumerate(repos)))):
                            await predict(store, user, repo, (user + k) % 2 == 0, 50 + user * 3 + k,
                                          round_id=rnd.id, at=now + 1)
                    await game.close_round(store, rnd.id, at=now + 2)
                    outcomes = dict(zip(repos, [(first, "verdict"), (second, "verdict")][:len(repos)], strict=True))
                    await game.reveal_round(store, rnd.id, outcomes, at=now + 3)
                    if void:
                        await game.void_round_repo(store, rnd.id, repos[0], reason="test", voided_by=1,
                                                   at=now + 4)
            except Refused:
                pass
        stats = {}
        seasons = [r[0] for r in await table(store, "SELECT id FROM seasons WHERE guild_id = ?", (GUILD,))]
        for user in (7, 8, 9):
            for season in (None, *seasons):
                got = await game.member_stats(store, GUILD, user, season_id=season, min_settled=1)
                flags = await table(store, "SELECT will_load = outcome FROM predictions WHERE guild_id = ?"
                                           " AND user_id = ? AND status = 'settled' AND points IS NOT NULL"
                                           " AND (? IS NULL OR season_id = ?) ORDER BY settled_at, id",
                                    (GUILD, user, season, season))
                stats[user, season] = ((got.current_streak, got.best_streak, got.settled),
                                       (*streaks(f[0] for f in flags), len(flags)))
        kept = [await table(store, f"SELECT * FROM {name} WHERE guild_id = ? ORDER BY 1, 2, 3, 4, 5, 6, 7",
                            (GUILD,)) for name in ("standings", "member_tallies")]
        await game.rebuild_standings(store, GUILD)
        rebuilt = [await table(store, f"SELECT * FROM {name} WHERE guild_id = ? ORDER BY 1, 2, 3, 4, 5, 6, 7",
                               (GUILD,)) for name in ("standings", "member_tallies")]
        return kept, rebuilt, stats

    kept, rebuilt, stats = asyncio.run(play())
    assert kept == rebuilt
    for got, expected in stats.values():
        assert got == expected


async def test_an_existing_game_carries_over_to_the_kept_standings(tmp_path):
    """A database that migration 010 left (standings recomputed by the service, no tallies, no streaks stored):
    migration 011 fills the tallies and streaks as a rebuild would, and the triggers take it from there."""
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        await store.migrate([m for m in discover_migrations() if m.version <= 10])
        rnd = random.Random(11)
        async with store.transaction() as db:
            await db.execute("INSERT INTO seasons (id, guild_id, name, started_at, ended_at) VALUES (1, ?, 'S1', ?, ?)",
                             (GUILD, T, T + 500))
            for i in range(300):
                settled_at = T + rnd.randrange(1000)  # ties too: settlement order is (settled_at, id)
                peeked = rnd.random() < 0.1
                will_load, confidence, outcome = rnd.random() < 0.5, rnd.randint(50, 99), rnd.random() < 0.5
                points = None if peeked else round(25 - (100 - confidence if will_load == outcome else confidence) ** 2
                                                    / 100, 2)
                await db.execute(
                    "INSERT INTO predictions (guild_id, user_id, repo_id, will_load, confidence, status, peeked,"
                    " created_at, updated_at, outcome, settled_by, settled_at, points, relative_points, season_id,"
                    " vs_canrun, kind) VALUES (?, ?, ?, ?, ?, 'settled', ?, ?, ?, ?, 'verdict', ?, ?, ?, ?, ?, ?)",
                    (GUILD, rnd.choice([7, 8, 9]), f"o/r{i}", will_load, confidence, peeked, T, T, outcome, settled_at,
                     points, None if points is None else rnd.choice([0.5, -1.25]), 1 if settled_at < T + 500 else None,
                     None if points is None or rnd.random() < 0.3 else 1.5, rnd.choice([None, "loads", "weights"])))
            for scope, seasoned, by_season in (("0", "", ""), ("season_id", " AND season_id IS NOT NULL", ", season_id")):
                await db.execute(  # what the service kept under migration 010
                    "INSERT INTO standings (guild_id, season_id, user_id, points, relative_points, settled, correct,"
                    f" reached_at, vs_canrun) SELECT guild_id, {scope}, user_id, ROUND(SUM(points), 2),"
                    " ROUND(TOTAL(relative_points), 3), COUNT(*), SUM(will_load = outcome), MAX(settled_at),"
                    " ROUND(TOTAL(vs_canrun), 2) FROM predictions WHERE status = 'settled' AND points IS NOT NULL"
                    f"{seasoned} GROUP BY user_id{by_season}")
        await store.migrate()
        tables = ("standings", "member_tallies")
        kept = [await table(store, f"SELECT * FROM {name} ORDER BY 1, 2, 3, 4, 5, 6, 7") for name in tables]
        assert all(row[11] is not None for row in kept[0])  # no stale streak left
        await game.rebuild_standings(store, GUILD)
        assert kept == [await table(store, f"SELECT * FROM {name} ORDER BY 1, 2, 3, 4, 5, 6, 7") for name in tables]
    finally:
        await store.close()
