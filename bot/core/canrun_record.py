"""canrun's record against trials: how often its verdict matched what `mlx_lm.load()` really did, scored by the
same Brier rule as the members' predictions, per mlx-lm version. Pure: the trials come in as plain records.

A verdict is a forecast: VERDICT_P_LOADS reads each verdict as the probability that load() succeeds. The record
scores those probabilities against trials; a miss (the verdict said the opposite of the trial) is a bug report.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from collections.abc import Iterable

from bot.core.verdicts import (
    LOADS, NO_CONFIG, REMOTE_CODE, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_QUANTIZATION, UNSUPPORTED_WEIGHTS,
)

# The probability that load() succeeds, read from each verdict. `loads` is the installed mlx-lm's own load run on
# the repo's metadata (or canrun's static gates when that dry load could not answer); what it cannot see is the
# bytes (a truncated or corrupt upload) and what happens at run time, hence 0.95 rather than certainty. The other
# verdicts name a gate load() fails at: no module for the model_type, no safetensors at the top of the repo, a
# file or key the loader requires, code canrun never runs (trust_remote_code) -- mlx-lm raises there, 0.02. The
# quantization gate is the one most often overtaken by a new mlx-lm (it learns formats), 0.1. `gated` and
# `not_found` say nothing about load(): they are not forecasts.
VERDICT_P_LOADS: dict[str, float] = {
    LOADS: 0.95,
    UNSUPPORTED_ARCHITECTURE: 0.02,
    UNSUPPORTED_WEIGHTS: 0.02,
    NO_CONFIG: 0.02,
    REMOTE_CODE: 0.02,
    UNSUPPORTED_QUANTIZATION: 0.1,
}
LATEST_MISSES = 5  # misses listed per mlx-lm version, latest first
UNKNOWN_VERSION = "unknown"


def p_loads(verdict: str) -> float | None:
    """The probability a verdict gives to "load() succeeds"; None for a verdict that is not a forecast."""
    return VERDICT_P_LOADS.get(verdict)


@dataclass(frozen=True)
class JudgedTrial:
    """A trial that told whether load() succeeds, with the verdict canrun gave when it was queued."""

    trial_id: int
    repo_id: str
    revision: str | None
    verdict: str
    loaded: bool
    mlx_lm_version: str
    finished_at: float
    error: str | None = None  # the trial's error (mlx-lm's message when load() failed)
    looks_broken: bool | None = None  # loaded, but the output looked broken (bot/core/output_check.py)

    @property
    def scored(self) -> bool:
        return p_loads(self.verdict) is not None

    @property
    def matched(self) -> bool:
        return (self.verdict == LOADS) == self.loaded

    @property
    def brier(self) -> float:
        """(p − outcome)²: 0 is perfect, 0.25 a coin flip."""
        p = p_loads(self.verdict)
        if p is None:
            raise ValueError(f"the verdict {self.verdict!r} is not a forecast")
        return (p - float(self.loaded)) ** 2


@dataclass(frozen=True)
class Record:
    """canrun's record over some trials: one mlx-lm version's, or all of them (`mlx_lm_version` None)."""

    mlx_lm_version: str | None
    trials: int
    matched: int
    brier: float | None  # mean Brier score; None without trials
    looked_broken: int  # trials that loaded, but whose output looked broken (they match a `loads` verdict)
    misses: tuple[JudgedTrial, ...]  # the latest first, at most LATEST_MISSES (or the number asked for)
    missed: int  # all misses, listed or not

    @property
    def share(self) -> float | None:
        return self.matched / self.trials if self.trials else None


@dataclass(frozen=True)
class CanrunRecord:
    overall: Record
    versions: tuple[Record, ...]  # the newest mlx-lm first


def record(trials: Iterable[JudgedTrial], latest_misses: int = LATEST_MISSES) -> CanrunRecord:
    """canrun's record, overall and per mlx-lm version, over the trials whose verdict is a forecast."""
    scored = [t for t in trials if t.scored]
    by_version: dict[str, list[JudgedTrial]] = {}
    for t in scored:
        by_version.setdefault(t.mlx_lm_version, []).append(t)
    versions = sorted(by_version, key=version_key, reverse=True)
    return CanrunRecord(overall=_record_of(None, scored, latest_misses),
                        versions=tuple(_record_of(v, by_version[v], latest_misses) for v in versions))


def _record_of(version: str | None, trials: list[JudgedTrial], latest_misses: int) -> Record:
    misses = sorted((t for t in trials if not t.matched), key=lambda t: (t.finished_at, t.trial_id), reverse=True)
    return Record(
        mlx_lm_version=version, trials=len(trials), matched=len(trials) - len(misses),
        brier=math.fsum(t.brier for t in trials) / len(trials) if trials else None,
        looked_broken=sum(1 for t in trials if t.loaded and t.looks_broken),
        misses=tuple(misses[:latest_misses]), missed=len(misses),
    )


def version_key(version: str) -> tuple:
    """Orders versions as numbers ("0.10.0" after "0.9.2"); what is not a version ("unknown") comes first."""
    numbers = re.findall(r"\d+", version)
    return (1, tuple(int(n) for n in numbers), version) if numbers else (0, (), version)


def miss_report(t: JudgedTrial) -> str | None:
    """One line for the owner's log when a trial shows canrun's verdict wrong (a bug report); None otherwise."""
    if not t.scored or t.matched:
        return None
    outcome = "loaded" if t.loaded else f"load() failed: {one_line(t.error) or 'no message'}"
    where = t.repo_id + (f"@{t.revision}" if t.revision else "")
    return (f"canrun's verdict missed: {where} verdict {t.verdict}, trial #{t.trial_id} {outcome}, "
            f"mlx-lm {t.mlx_lm_version}")


def one_line(text: str | None, limit: int = 300) -> str:
    """A message on one line (mlx-lm's errors often list names on the lines that follow), at most `limit` long."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
