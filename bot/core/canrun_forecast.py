"""canrun's own forecast in the prediction game: the probability that `mlx_lm.load()` succeeds, from its verdict
and how that verdict has fared against the trials. Pure: the trials come in as plain records.

The prior is the verdict's fixed reading (core/canrun_record.VERDICT_P_LOADS: 0.95 for `loads`, ...). Trials of
the same verdict class then move it, as a Beta distribution's mean moves with observations: the prior counts as
PRIOR_TRIALS imaginary trials that loaded in the prior's share, and each real trial of that verdict class counts
once, so

    p = (prior · PRIOR_TRIALS + trials that loaded) / (PRIOR_TRIALS + trials).

With no trials p is the prior; with ten it sits halfway between the prior and the trials' share; with hundreds it
is the trials' share. A verdict class that keeps missing (a `loads` that fails) loses confidence, one that keeps
matching gains it. p is kept within 1-99 %, the range a member can say, so canrun never bets more than a member
could.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable

from bot.core.canrun_record import JudgedTrial, p_loads
from bot.core.verdicts import LOADS

PRIOR_TRIALS = 10  # how many trials the prior weighs: a verdict class needs about that many to move halfway
P_MIN, P_MAX = 0.01, 0.99  # a member's 99 % either way


@dataclass(frozen=True)
class TrackRecord:
    """The trials of one verdict class: how many judged load(), and how many of them loaded."""

    trials: int = 0
    loaded: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.loaded <= self.trials:
            raise ValueError(f"loaded must be between 0 and trials, got {self.loaded} of {self.trials}")


@dataclass(frozen=True)
class CanrunForecast:
    """canrun's forecast on one repo: its verdict, the prior, the trials it learnt from, and the blend."""

    verdict: str
    prior: float
    trials: int  # trials of this verdict class
    agreed: int  # of them, those whose outcome matched the verdict
    p_loads: float

    @property
    def says_loads(self) -> bool:
        return self.verdict == LOADS


def track_records(trials: Iterable[JudgedTrial], *, leave_out_repo: str | None = None) -> dict[str, TrackRecord]:
    """Per verdict, the trials that judged load() after being queued with it. `leave_out_repo`: the repo being
    forecast, whose own trials would be the answer itself (canrun does not peek either)."""
    counts: dict[str, list[int]] = {}
    for t in trials:
        if t.scored and t.repo_id != leave_out_repo:
            tally = counts.setdefault(t.verdict, [0, 0])
            tally[0] += 1
            tally[1] += t.loaded
    return {verdict: TrackRecord(n, loaded) for verdict, (n, loaded) in counts.items()}


def blend(prior: float, record: TrackRecord, prior_trials: int = PRIOR_TRIALS) -> float:
    """The Beta-style blend of a prior probability with a track record (see the module docstring), unclamped."""
    if not 0 <= prior <= 1:
        raise ValueError(f"prior must be a probability, got {prior!r}")
    if prior_trials <= 0:
        raise ValueError("prior_trials must be positive")
    return (prior * prior_trials + record.loaded) / (prior_trials + record.trials)


def forecast(verdict: str, records: dict[str, TrackRecord]) -> CanrunForecast | None:
    """canrun's forecast for a repo with this verdict, given the track records; None for a verdict that is no
    forecast (gated, not_found)."""
    prior = p_loads(verdict)
    if prior is None:
        return None
    record = records.get(verdict, TrackRecord())
    agreed = record.loaded if verdict == LOADS else record.trials - record.loaded
    p = min(P_MAX, max(P_MIN, blend(prior, record)))
    return CanrunForecast(verdict=verdict, prior=prior, trials=record.trials, agreed=agreed, p_loads=round(p, 4))
