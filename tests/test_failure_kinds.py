"""Calibration by kind: every verdict maps onto the kind of question a model is, and /mystats counts a member's
predictions per kind from the store (the kind copied from canrun's forecast when the group settles)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.canrun_forecast import forecast
from bot.core.failure_kinds import (
    KINDS, MEMORY, KindAccuracy, accuracy_by_kind, failure_kind, weakest,
)
from bot.core.verdicts import ALL_VERDICTS, GATED, LOADS, NO_CONFIG, NOT_FOUND, REMOTE_CODE
from bot.services import predictions as game
from tests.test_predictions import GUILD, T, predict

FITS = (None, "fits", "tight", "too_large")


@given(verdict=st.sampled_from(ALL_VERDICTS), fit=st.sampled_from(FITS))
def test_every_verdict_that_asks_about_load_has_one_kind(verdict, fit):
    kind = failure_kind(verdict, fit)
    assert (kind is None) == (verdict in (GATED, NOT_FOUND))
    assert kind is None or kind in KINDS


def test_the_mapping():
    assert [failure_kind(v) for v in ALL_VERDICTS] == [
        "loads", "architecture", "weights", "quantization", "remote code / tokenizer", "remote code / tokenizer",
        None, None]
    assert failure_kind(LOADS, "too_large") == MEMORY and failure_kind(LOADS, "tight") == "loads"
    assert failure_kind(REMOTE_CODE) == failure_kind(NO_CONFIG)
    reached = {failure_kind(v, f) for v in ALL_VERDICTS for f in FITS} - {None}
    assert reached == set(KINDS)


@given(st.dictionaries(st.sampled_from(KINDS + ("unknown",)),
                       st.integers(0, 50).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n)))))
def test_accuracy_by_kind_keeps_load_order_and_only_what_was_predicted(counts):
    kinds = accuracy_by_kind(counts)
    assert [k.kind for k in kinds] == [k for k in KINDS if counts.get(k, (0, 0))[0] > 0]
    assert all(0 <= k.accuracy <= 1 for k in kinds)
    low = weakest(kinds)
    enough = [k for k in kinds if k.count >= 3]
    assert (low is None) == (len(enough) < 2)
    assert low is None or low.accuracy == min(k.accuracy for k in enough)


def test_weakest_needs_two_kinds_to_compare():
    assert weakest([KindAccuracy("weights", 5, 1)]) is None
    assert weakest([KindAccuracy("weights", 5, 1), KindAccuracy("loads", 2, 0)]) is None  # 2 are too few
    assert weakest([KindAccuracy("weights", 5, 4), KindAccuracy("loads", 4, 1)]).kind == "loads"


async def canrun_forecasts(store, repo, verdict, fit=None, round_id=None):
    await game.record_forecast(store, guild_id=GUILD, repo_id=repo, round_id=round_id,
                               forecast=forecast(verdict, {}), fit=fit, at=T)


@pytest.mark.parametrize("season", [False, True])
async def test_member_stats_count_right_answers_per_kind(store, season):
    if season:
        await game.start_season(store, GUILD, "S", at=T)
    plan = [("o/arch", "unsupported_architecture", None, False, False),  # right
            ("o/arch2", "unsupported_architecture", None, True, False),  # wrong
            ("o/big", LOADS, "too_large", False, False),  # right: a memory question
            ("o/fine", LOADS, "fits", True, True),  # right
            ("o/quant", "unsupported_quantization", None, False, True)]  # wrong: a new mlx-lm reads it
    for repo, verdict, fit, said, outcome in plan:
        await predict(store, 10, repo, said, 80, at=T + 1)
        await canrun_forecasts(store, repo, verdict, fit)
        await game.settle_repo(store, None, repo, outcome, "trial", at=T + 2)
    await predict(store, 10, "o/none", True, 80, at=T + 1)  # canrun never forecast it: no kind
    await game.settle_repo(store, GUILD, "o/none", True, "verdict", at=T + 2)
    season_id = (await game.active_season(store, GUILD)).id if season else None
    stats = await game.member_stats(store, GUILD, 10, season_id=season_id, min_settled=1)
    assert stats.settled == 6
    assert [(k.kind, k.count, k.correct) for k in stats.by_kind] == [
        ("architecture", 2, 1), ("quantization", 1, 0), ("memory", 1, 1), ("loads", 1, 1)]
