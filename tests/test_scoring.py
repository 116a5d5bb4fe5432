"""Scoring of the prediction game: properties of the Brier points, relative points, calibration and streaks."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.scoring import (
    BUCKET_BOUNDS, Forecast, accuracy_of, brier_points, calibration_of, group_relative_points, mean_brier_of,
    probability_of_loads, relative_points, streaks, tally,
)

probabilities = st.floats(min_value=0, max_value=1, allow_nan=False)
confidences = st.integers(min_value=50, max_value=99)
forecasts = st.builds(Forecast, will_load=st.booleans(), confidence=confidences, outcome=st.booleans())
points_lists = st.lists(st.floats(min_value=-75, max_value=25, allow_nan=False), min_size=1, max_size=40)


def expected_points(p: float, q: float) -> float:
    """The points a member expects for reporting p when they believe the repo loads with probability q."""
    return q * brier_points(p, True) + (1 - q) * brier_points(p, False)


def test_reference_values():
    assert brier_points(0.99, True) == pytest.approx(24.99)
    assert brier_points(0.99, False) == pytest.approx(-73.01)
    assert brier_points(0.5, True) == brier_points(0.5, False) == 0
    assert probability_of_loads(True, 80) == 0.8
    assert probability_of_loads(False, 80) == pytest.approx(0.2)


@given(probabilities, st.booleans())
def test_points_are_bounded(p, outcome):
    assert -75 <= brier_points(p, outcome) <= 25


@given(st.booleans(), confidences, st.booleans())
def test_reportable_points_stay_inside_the_99_percent_extremes(will_load, confidence, outcome):
    points = brier_points(probability_of_loads(will_load, confidence), outcome)
    assert -73.01 - 1e-9 <= points <= 24.99 + 1e-9


@given(q=probabilities, p=probabilities)
def test_reporting_your_belief_is_best(q, p):
    # The Brier rule is strictly proper: the expected loss of reporting p instead of q is exactly 100·(p − q)².
    assert expected_points(q, q) >= expected_points(p, q) - 1e-9
    assert expected_points(q, q) - expected_points(p, q) == pytest.approx(100 * (p - q) ** 2, abs=1e-9)


def test_reporting_your_belief_is_best_among_the_choices_the_bot_offers():
    choices = [(w, c) for w in (True, False) for c in range(50, 100)]
    for belief in range(1, 100):
        q = belief / 100
        best = max(choices, key=lambda wc: expected_points(probability_of_loads(*wc), q))
        assert probability_of_loads(*best) == pytest.approx(q)


@given(probabilities, st.booleans())
def test_symmetric_in_the_outcome(p, outcome):
    assert brier_points(p, outcome) == pytest.approx(brier_points(1 - p, not outcome))


@given(st.booleans(), confidences, st.booleans())
def test_saying_the_opposite_with_the_same_confidence_mirrors(will_load, confidence, outcome):
    mine = brier_points(probability_of_loads(will_load, confidence), outcome)
    assert mine == pytest.approx(brier_points(probability_of_loads(not will_load, confidence), not outcome))


@given(probabilities, probabilities)
def test_more_probability_on_what_happened_never_scores_less(a, b):
    low, high = sorted((a, b))
    assert brier_points(high, True) >= brier_points(low, True)
    assert brier_points(low, False) >= brier_points(high, False)


@given(st.booleans(), confidences, confidences)
def test_confidence_pays_when_right_and_costs_when_wrong(will_load, c1, c2):
    low, high = sorted((c1, c2))
    right, wrong = will_load, not will_load
    assert brier_points(probability_of_loads(will_load, high), right) >= brier_points(
        probability_of_loads(will_load, low), right)
    assert brier_points(probability_of_loads(will_load, high), wrong) <= brier_points(
        probability_of_loads(will_load, low), wrong)


@pytest.mark.parametrize("confidence", [49, 100, 0, -5, 50.5, "70", True, None])
def test_confidence_outside_50_to_99_is_refused(confidence):
    with pytest.raises(ValueError, match="confidence"):
        probability_of_loads(True, confidence)
    with pytest.raises(ValueError, match="confidence"):
        Forecast(True, confidence, True)


@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan"), float("inf"), "0.5"])
def test_probability_outside_0_to_1_is_refused(p):
    with pytest.raises(ValueError, match="p_loads"):
        brier_points(p, True)


@given(points_lists)
def test_a_member_at_the_median_scores_zero_relative(group):
    assert relative_points(statistics.median(group), group) == 0


@given(points_lists.filter(lambda g: len(g) % 2 == 1))
def test_the_middle_member_of_an_odd_group_scores_zero_relative(group):
    middle = sorted(group)[len(group) // 2]
    assert relative_points(middle, group) == 0


@given(points_lists, st.floats(min_value=-50, max_value=50))
def test_relative_points_ignore_a_shift_of_everyone(group, shift):
    shifted = [p + shift for p in group]
    assert relative_points(group[0] + shift, shifted) == pytest.approx(relative_points(group[0], group), abs=1e-6)


@given(points_lists)
def test_group_relative_points_agree_with_relative_points(group):
    assert group_relative_points(group) == [relative_points(p, group) for p in group]


def test_relative_points_need_a_group():
    with pytest.raises(ValueError, match="group"):
        relative_points(10.0, [])
    assert group_relative_points([]) == []


@given(st.lists(st.booleans()))
def test_streak_invariants(outcomes):
    current, best = streaks(outcomes)
    assert 0 <= current <= best <= sum(outcomes)
    trailing = len(outcomes) - len("".join("x" if o else "." for o in outcomes).rstrip("x"))
    assert current == trailing
    assert streaks(outcomes + [True]) == (current + 1, max(best, current + 1))
    assert streaks(outcomes + [False]) == (0, best)


@given(st.integers(min_value=0, max_value=50))
def test_all_correct_is_one_long_streak(n):
    assert streaks([True] * n) == (n, n)


def test_best_streak_can_be_in_the_past():
    assert streaks([True, True, True, False, True]) == (1, 3)


@given(st.lists(forecasts, max_size=60))
def test_calibration_buckets_add_up(fs):
    buckets = calibration_of(tally(fs))
    assert [(b.low, b.high) for b in buckets] == list(BUCKET_BOUNDS)
    assert sum(b.count for b in buckets) == len(fs)
    assert sum(b.correct for b in buckets) == sum(f.correct for f in fs)
    for b in buckets:
        assert 0 <= b.correct <= b.count
        if b.count:
            assert b.low <= b.mean_confidence <= b.high and 0 <= b.hit_rate <= 1
        else:
            assert b.mean_confidence is None and b.hit_rate is None


def test_calibration_puts_each_confidence_in_its_band():
    buckets = calibration_of(tally(Forecast(True, c, True) for c in (50, 59, 60, 79, 80, 90, 99)))
    assert [b.count for b in buckets] == [2, 1, 1, 1, 2]


@given(st.lists(forecasts, max_size=60))
def test_accuracy_and_mean_brier(fs):
    if not fs:
        assert accuracy_of(tally(fs)) is None and mean_brier_of(tally(fs)) is None
        return
    assert accuracy_of(tally(fs)) == sum(f.correct for f in fs) / len(fs)
    assert 0 <= mean_brier_of(tally(fs)) <= 1
    # A mean Brier score and mean points are the same ranking: points = 25 − 100·brier.
    mean_points = statistics.fmean(brier_points(f.p_loads, f.outcome) for f in fs)
    assert mean_points == pytest.approx(25 - 100 * mean_brier_of(tally(fs)))
