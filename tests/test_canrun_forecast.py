"""canrun's own forecast: the blend of its verdict's prior with its track record (property tests), and its row in
the game against a real SQLite file: hidden until settled, scored by the members' rule, never in a median or a
rank, each member's "vs canrun" beside "vs group median", re-scored once by a disagreeing trial, void with its
round repo."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.canrun_forecast import P_MAX, P_MIN, PRIOR_TRIALS, TrackRecord, blend, forecast, track_records
from bot.core.canrun_record import VERDICT_P_LOADS, JudgedTrial
from bot.core.scoring import brier_points, points_vs
from bot.core.verdicts import ALL_VERDICTS, GATED, LOADS, NOT_FOUND, UNSUPPORTED_WEIGHTS
from bot.services import predictions as game
from tests.test_predictions import GUILD, T, predict, table
from tests.test_predictions import assert_standings_match_a_rebuild as members_standings_match_a_rebuild

records = st.integers(0, 500).flatmap(lambda n: st.builds(TrackRecord, st.just(n), st.integers(0, n)))
priors = st.sampled_from(sorted(set(VERDICT_P_LOADS.values())))


# ---- the forecast's math ------------------------------------------------------------------------


@given(prior=st.floats(0, 1), record=records)
def test_the_blend_lies_between_the_prior_and_the_trials_share(prior, record):
    p = blend(prior, record)
    share = record.loaded / record.trials if record.trials else prior
    assert min(prior, share) - 1e-12 <= p <= max(prior, share) + 1e-12


@given(prior=priors, record=records)
def test_more_trials_that_loaded_never_lower_the_forecast(prior, record):
    if record.loaded < record.trials:
        better = TrackRecord(record.trials, record.loaded + 1)
        assert blend(prior, better) > blend(prior, record)
    assert blend(prior, TrackRecord(record.trials + 1, record.loaded + 1)) >= blend(prior, record)
    assert blend(prior, TrackRecord(record.trials + 1, record.loaded)) <= blend(prior, record)


@given(prior=priors, n=st.integers(0, 10_000))
def test_the_prior_weighs_prior_trials_trials(prior, n):
    # PRIOR_TRIALS trials that all disagree with the prior move it exactly halfway towards them.
    halfway = blend(prior, TrackRecord(PRIOR_TRIALS, 0))
    assert halfway == pytest.approx(prior / 2)
    # without trials it is the prior; with many it is the trials' share
    assert blend(prior, TrackRecord()) == prior
    many = blend(prior, TrackRecord(n + 100_000, n))
    assert many == pytest.approx(n / (n + 100_000), abs=PRIOR_TRIALS / 100_000)


@given(verdict=st.sampled_from(ALL_VERDICTS), record=records)
def test_a_forecast_stays_in_a_members_range_and_counts_agreement_by_the_verdicts_answer(verdict, record):
    made = forecast(verdict, {verdict: record})
    if verdict in (GATED, NOT_FOUND):
        assert made is None
        return
    assert P_MIN <= made.p_loads <= P_MAX
    assert (made.prior, made.trials) == (VERDICT_P_LOADS[verdict], record.trials)
    assert made.agreed == (record.loaded if verdict == LOADS else record.trials - record.loaded)
    assert brier_points(made.p_loads, True) >= -75 and brier_points(made.p_loads, False) <= 25


def judged(i, repo, verdict, loaded):
    return JudgedTrial(trial_id=i, repo_id=repo, revision=None, verdict=verdict, loaded=loaded,
                       mlx_lm_version="0.30", finished_at=float(i))


def test_track_records_count_per_verdict_and_leave_out_the_repo_forecast():
    trials = [judged(1, "o/a", LOADS, True), judged(2, "o/b", LOADS, False), judged(3, "o/c", LOADS, True),
              judged(4, "o/d", UNSUPPORTED_WEIGHTS, False), judged(5, "o/e", GATED, False)]
    assert track_records(trials) == {LOADS: TrackRecord(3, 2), UNSUPPORTED_WEIGHTS: TrackRecord(1, 0)}
    assert track_records(trials, leave_out_repo="o/a") == {LOADS: TrackRecord(2, 1),
                                                          UNSUPPORTED_WEIGHTS: TrackRecord(1, 0)}
    made = forecast(LOADS, track_records(trials))
    assert (made.trials, made.agreed, made.p_loads) == (3, 2, round((0.95 * 10 + 2) / 13, 4))
    with pytest.raises(ValueError):
        TrackRecord(1, 2)


@given(member=st.floats(-75, 25), canrun=st.floats(-75, 25))
def test_vs_canrun_is_the_difference_and_zero_at_canruns_own_points(member, canrun):
    assert points_vs(member, canrun) == pytest.approx(member - canrun)
    assert points_vs(canrun, canrun) == 0


# ---- canrun's row in the game ---------------------------------------------------------------------


async def assert_standings_match_a_rebuild(store):
    """canrun's standings, kept one forecast at a time, are what a rebuild from its forecasts gives (members' too)."""
    kept = await table(store, "SELECT * FROM canrun_standings ORDER BY guild_id, season_id")
    await members_standings_match_a_rebuild(store)
    assert kept == await table(store, "SELECT * FROM canrun_standings ORDER BY guild_id, season_id")


async def canrun_forecasts(store, guild=GUILD, repo="o/a", round_id=None, p=0.9, verdict=LOADS, at=T):
    made = forecast(verdict, {})
    made = type(made)(verdict=verdict, prior=made.prior, trials=0, agreed=0, p_loads=p)
    return await game.record_forecast(store, guild_id=guild, repo_id=repo, round_id=round_id, forecast=made, at=at)


async def test_canrun_forecasts_once_per_group_and_settles_with_it_outside_rounds(store):
    await predict(store, 10, "o/a", True, 80, at=T)
    await predict(store, 11, "o/a", False, 60, at=T)
    assert await canrun_forecasts(store, p=0.9, at=T + 1)
    assert not await canrun_forecasts(store, p=0.1, at=T + 2)  # the first forecast stays
    assert (await game.canrun_forecast(store, GUILD, "o/a")).status == "open"

    await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 5)
    row = await game.canrun_forecast(store, GUILD, "o/a")
    assert (row.status, row.outcome, row.points) == ("settled", True, 24.0)  # 100(1 - 0.1²) - 75
    # members: 21 and -11; the median (5) is the members' only, canrun's 24 is not in it
    assert await table(store, "SELECT user_id, points, relative_points, vs_canrun FROM predictions ORDER BY user_id") \
        == [(10, 21.0, 16.0, -3.0), (11, -11.0, -16.0, -35.0)]
    board = await game.leaderboard(store, GUILD, min_settled=1)
    assert [r.user_id for r in board.rows] == [10, 11] and board.members == 2  # canrun takes no rank
    assert (board.canrun.points, board.canrun.settled, board.canrun.correct) == (24.0, 1, 1)
    assert [r.vs_canrun for r in board.rows] == [-3.0, -35.0]
    stats = await game.member_stats(store, GUILD, 10, min_settled=1)
    assert (stats.vs_canrun, stats.vs_canrun_scored, stats.rank) == (-3.0, 1, 1)
    await assert_standings_match_a_rebuild(store)


async def test_a_forecast_made_after_the_answer_waits_for_the_next_one(store):
    await predict(store, 10, "o/a", True, 80, at=T)
    await canrun_forecasts(store, at=T + 5)
    await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 5)
    assert (await game.canrun_forecast(store, GUILD, "o/a")).status == "open"
    assert (await game.leaderboard(store, GUILD, min_settled=1)).canrun is None
    await game.settle_repo(store, None, "o/a", True, "trial", at=T + 9)  # a trial settles it in every guild
    row = await game.canrun_forecast(store, GUILD, "o/a")
    assert (row.status, row.settled_by, row.points) == ("settled", "trial", 24.0)
    assert await table(store, "SELECT vs_canrun FROM predictions") == [(-3.0,)]


async def test_a_disagreeing_trial_rescores_canrun_once_and_the_members_against_it(store):
    await predict(store, 10, "o/a", True, 80, at=T)
    await canrun_forecasts(store, p=0.9, at=T)
    await game.settle_repo(store, GUILD, "o/a", True, "verdict", at=T + 5)
    await game.settle_repo(store, None, "o/a", False, "trial", at=T + 10)
    row = await game.canrun_forecast(store, GUILD, "o/a")
    assert (row.outcome, row.settled_by, row.points, row.resettled) == (False, "trial", -56.0, True)
    assert await table(store, "SELECT points, vs_canrun FROM predictions") == [(-39.0, 17.0)]
    await game.settle_repo(store, None, "o/a", True, "trial", at=T + 20)  # a trial's settlement is final
    assert (await game.canrun_forecast(store, GUILD, "o/a")).points == -56.0
    await assert_standings_match_a_rebuild(store)


async def test_a_trial_rescores_canrun_in_a_round_nobody_predicted(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a"], at=T)
    await canrun_forecasts(store, round_id=rnd.id, p=0.9, at=T)
    await game.close_round(store, rnd.id, at=T + 1)
    await game.reveal_round(store, rnd.id, {"o/a": (True, "verdict")}, at=T + 2)  # no member played it
    await game.settle_repo(store, None, "o/a", False, "trial", at=T + 10)  # then a trial: it does not load
    row = await game.canrun_forecast(store, GUILD, "o/a", rnd.id)
    assert (row.outcome, row.settled_by, row.points) == (False, "trial", -56.0)
    assert [(r.outcome, r.settled_by) for r in (await game.round_results(store, rnd.id)).round.repos] == [
        (False, "trial")]
    await assert_standings_match_a_rebuild(store)


async def test_canruns_round_row_is_revealed_with_the_round_and_voided_with_its_repo(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a", "o/b"], at=T)
    await canrun_forecasts(store, repo="o/a", round_id=rnd.id, p=0.95, at=T)
    await canrun_forecasts(store, repo="o/b", round_id=rnd.id, p=0.02, verdict=UNSUPPORTED_WEIGHTS, at=T)
    for user, conf in ((10, 90), (11, 60)):
        await predict(store, user, "o/a", True, conf, at=T + 1, round_id=rnd.id)
        await predict(store, user, "o/b", False, conf, at=T + 1, round_id=rnd.id)
    await game.close_round(store, rnd.id, at=T + 2)
    season = await game.start_season(store, GUILD, "S", at=T + 2)
    results = await game.reveal_round(store, rnd.id, {"o/a": (True, "trial"), "o/b": (True, "trial")}, at=T + 3)
    assert [(f.repo_id, f.status, f.points) for f in results.canrun] == [
        ("o/a", "settled", 24.75), ("o/b", "settled", -71.04)]
    assert results.canrun_points == round(24.75 - 71.04, 2)
    # 10: 24 + -56 = -32; canrun -46.29; 11: 9 + -11 = -2
    assert [(m.user_id, m.points, m.vs_canrun) for m in results.members] == [
        (11, -2.0, round(-2.0 + 46.29, 2)), (10, -32.0, round(-32.0 + 46.29, 2))]

    board = await game.leaderboard(store, GUILD, season_id=season.id, min_settled=1)
    assert (board.canrun.points, board.canrun.settled, board.canrun.correct) == (round(24.75 - 71.04, 2), 2, 1)
    await assert_standings_match_a_rebuild(store)
    await game.void_round_repo(store, rnd.id, "o/b", reason="changed", voided_by=1, at=T + 4)
    board = await game.leaderboard(store, GUILD, season_id=season.id, min_settled=1)
    assert (board.canrun.points, board.canrun.settled, board.canrun.correct) == (24.75, 1, 1)
    results = await game.round_results(store, rnd.id)
    assert [f.status for f in results.canrun] == ["settled", "void"] and results.canrun_points == 24.75
    assert [(m.user_id, m.vs_canrun) for m in results.members] == [(10, -0.75), (11, -15.75)]
    await assert_standings_match_a_rebuild(store)


async def test_a_round_without_canruns_forecasts_shows_no_vs_canrun(store):
    rnd = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=["o/a"], at=T)
    await predict(store, 10, "o/a", True, 80, at=T + 1, round_id=rnd.id)
    await game.close_round(store, rnd.id, at=T + 2)
    results = await game.reveal_round(store, rnd.id, {"o/a": (True, "verdict")}, at=T + 3)
    assert results.canrun == [] and results.canrun_points is None and results.members[0].vs_canrun is None
