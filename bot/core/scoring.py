"""Scoring of the prediction game: pure functions of predictions and outcomes.

A member says whether a repo loads and how sure they are (confidence 50-99 %). Points are Brier-based:
100·(1 − (p − outcome)²) − 75, where p is the probability they gave to "loads". The Brier score is a proper
scoring rule: whatever a member believes, reporting that belief earns the most points on average, so bluffing
confidence never pays. The offset 75 makes a coin flip (50 %) worth 0: −75 ≤ points ≤ 25.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cached_property
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

MIN_CONFIDENCE, MAX_CONFIDENCE = 50, 99
POINTS_OFFSET = 75
BUCKET_BOUNDS = ((50, 59), (60, 69), (70, 79), (80, 89), (90, 99))


def check_confidence(confidence: int) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, int):
        raise ValueError(f"confidence must be a whole percentage, got {confidence!r}")
    if not MIN_CONFIDENCE <= confidence <= MAX_CONFIDENCE:
        raise ValueError(f"confidence must be between {MIN_CONFIDENCE} and {MAX_CONFIDENCE} %, got {confidence}")


def probability_of_loads(will_load: bool, confidence: int) -> float:
    """The probability a member gave to "loads": 80 % sure it will not load is 0.2."""
    check_confidence(confidence)
    return _p_loads(will_load, confidence)


def _p_loads(will_load: bool, confidence: int) -> float:
    p = confidence / 100
    return p if will_load else 1 - p


def brier_points(p_loads: float, outcome: bool) -> float:
    """100·(1 − (p − outcome)²) − 75, in [−75, 25]. At p = 0.99: +24.99 when right, −73.01 when wrong."""
    if not (isinstance(p_loads, (int, float)) and math.isfinite(p_loads) and 0 <= p_loads <= 1):
        raise ValueError(f"p_loads must be a probability between 0 and 1, got {p_loads!r}")
    return 100 * (1 - (p_loads - float(outcome)) ** 2) - POINTS_OFFSET


def relative_points(points: float, group_points: Sequence[float]) -> float:
    """Points above the group's median on the same question (a peer score); the member's own points belong in
    the group. A member at the median scores 0."""
    if not group_points:
        raise ValueError("relative_points needs the group's points, the member's own included")
    return points - statistics.median(group_points)


def group_relative_points(group_points: Sequence[float]) -> list[float]:
    """relative_points of every member of a group, in its order (one median for all of them)."""
    if not group_points:
        return []
    median = statistics.median(group_points)
    return [points - median for points in group_points]


def points_vs(points: float, baseline_points: float) -> float:
    """Points above a baseline forecaster's on the same question: "vs canrun" is a member's points minus canrun's
    own forecast's, scored by the same rule. Unlike the median, the baseline is one forecaster outside the group,
    so it moves nobody else's score."""
    return points - baseline_points


@dataclass(frozen=True)
class Forecast:
    """A settled prediction as scoring sees it. There are only 200 distinct ones (2 x 50 x 2), so callers with
    many can share instances; the derived values are computed once per instance."""

    will_load: bool
    confidence: int
    outcome: bool

    def __post_init__(self) -> None:
        check_confidence(self.confidence)

    @cached_property
    def p_loads(self) -> float:
        return _p_loads(self.will_load, self.confidence)

    @cached_property
    def correct(self) -> bool:
        return self.will_load == self.outcome

    @cached_property
    def brier(self) -> float:
        """The Brier score, (p − outcome)²: 0 is perfect, lower is better."""
        return (self.p_loads - float(self.outcome)) ** 2


@dataclass(frozen=True)
class Bucket:
    """Calibration of one confidence band: a calibrated member is right about as often as they said."""

    low: int
    high: int
    count: int
    correct: int
    mean_confidence: float | None  # percent; None for an empty bucket

    @property
    def hit_rate(self) -> float | None:
        return self.correct / self.count if self.count else None


# A member may have thousands of settled predictions but there are only 200 distinct forecasts: the measures
# below take a tally (forecast -> how many times), so they cost 200 steps at most.
Tally = Mapping[Forecast, int]


def tally(forecasts: Iterable[Forecast]) -> Counter[Forecast]:
    return Counter(forecasts)


def calibration_of(counts: Tally) -> list[Bucket]:
    """One bucket per confidence band (50-59 ... 90-99), empty ones included, in order."""
    tallies = {low: [0, 0, 0] for low, _ in BUCKET_BOUNDS}  # count, correct, sum of confidences
    for f, n in counts.items():
        bucket = tallies[f.confidence // 10 * 10]
        bucket[0] += n
        bucket[1] += n * f.correct
        bucket[2] += n * f.confidence
    return [Bucket(low, high, count, correct, total / count if count else None)
            for (low, high), (count, correct, total) in zip(BUCKET_BOUNDS, tallies.values(), strict=True)]


def accuracy_of(counts: Tally) -> float | None:
    """The share of correct predictions; None when there are none."""
    total = sum(counts.values())
    return sum(n for f, n in counts.items() if f.correct) / total if total else None


def mean_brier_of(counts: Tally) -> float | None:
    """The mean Brier score (0 perfect, 0.25 a coin flip, 1 worst); None when there are none."""
    total = sum(counts.values())
    return math.fsum(n * f.brier for f, n in counts.items()) / total if total else None


def streaks(outcomes_in_time_order: Iterable[bool]) -> tuple[int, int]:
    """(current, best) runs of correct predictions; current is the run that ends with the latest one. A busy member
    has thousands of predictions: one byte each, split at the wrong ones, keeps it at C speed."""
    runs = bytes(map(bool, outcomes_in_time_order)).split(b"\0")
    return len(runs[-1]), max(map(len, runs))
