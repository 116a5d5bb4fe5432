"""What a trial load reports: its progress while it runs and its outcome when it ends.

Plain records, so that the runner (services/trial_runner.py), the queue and both renderers (terminal and Discord)
share them without the renderers importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed_out"


@dataclass
class TrialProgress:
    phase: str
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_present: int = 0  # of bytes_done, those on disk before the trial (nothing to fetch for them)
    tokens: int = 0
    load_seconds: float | None = None


@dataclass
class TrialOutcome:
    status: str  # SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
    phase: str | None  # the phase the trial ended in (None: the worker died before naming one)
    error: str | None
    duration_seconds: float
    result: dict[str, Any]  # the worker's result fields; after a failure only what is known, e.g. load_seconds
    reported: bool = False  # a failure the worker itself reported (e.g. mlx-lm raised), not a death or a kill
