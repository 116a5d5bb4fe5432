"""What the game stores and returns: its records, its refusals, and the small SQL helpers of the package."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import aiosqlite

from bot.core.errors import CanrunUserError
from bot.core.failure_kinds import KindAccuracy
from bot.core.scoring import Bucket

Source = Literal["trial", "verdict"]
SOURCES = ("trial", "verdict")
MAX_ROUND_REPOS = 5
ALL_TIME = 0  # standings.season_id of the all-time totals


class Refused(CanrunUserError):
    """Not allowed now (locked, closed, already done, ...); the message is for the member."""


@dataclass(frozen=True)
class Prediction:
    id: int
    guild_id: int
    user_id: int
    repo_id: str
    round_id: int | None
    will_load: bool
    confidence: int
    status: str  # open | locked | settled | void
    peeked: bool
    created_at: float
    updated_at: float
    locked_at: float | None
    outcome: bool | None
    settled_by: str | None
    settled_at: float | None
    points: float | None
    relative_points: float | None
    season_id: int | None
    resettled: bool
    vs_canrun: float | None = None  # points minus canrun's in the same group; None where canrun made no forecast
    kind: str | None = None  # the kind of model (core/failure_kinds.py), set when it settles

    @classmethod
    def from_row(cls, row: Any) -> Prediction:
        d = dict(row)
        for key in ("will_load", "peeked", "resettled"):
            d[key] = bool(d[key])
        d["outcome"] = None if d["outcome"] is None else bool(d["outcome"])
        return cls(**d)


@dataclass(frozen=True)
class HistoryEntry:
    change: str  # placed | changed | locked | unlocked | settled | confirmed | resettled | voided
    will_load: bool
    confidence: int
    status: str
    peeked: bool
    outcome: bool | None
    points: float | None
    at: float


@dataclass(frozen=True)
class Season:
    id: int
    guild_id: int
    name: str
    started_at: float
    ended_at: float | None


@dataclass(frozen=True)
class RoundRepo:
    repo_id: str
    position: int
    outcome: bool | None
    settled_by: str | None
    void_reason: str | None


@dataclass(frozen=True)
class Round:
    id: int
    guild_id: int
    channel_id: int | None
    opened_by: int
    status: str  # open | closed | revealed
    opened_at: float
    closes_at: float | None
    closed_at: float | None
    revealed_at: float | None
    repos: tuple[RoundRepo, ...]


@dataclass(frozen=True)
class MemberRoundScore:
    user_id: int
    points: float  # the sum over the round's repos; peeked predictions add nothing
    relative_points: float
    scored: int
    peeked: int
    vs_canrun: float | None = None  # the sum over the repos canrun forecast too; None if it forecast none of them


@dataclass(frozen=True)
class CanrunForecastRow:
    """canrun's stored forecast on one repo in one group (a round's, or outside rounds)."""

    repo_id: str
    round_id: int | None
    verdict: str
    prior: float
    trials: int  # trials of the verdict class it learnt from
    agreed: int
    p_loads: float
    status: str  # open | settled | void
    outcome: bool | None
    settled_by: str | None
    points: float | None
    resettled: bool

    @classmethod
    def from_row(cls, row: Any) -> CanrunForecastRow:
        return cls(row["repo_id"], row["round_id"], row["verdict"], row["prior"], row["trials"], row["agreed"],
                   row["p_loads"], row["status"], None if row["outcome"] is None else bool(row["outcome"]),
                   row["settled_by"], row["points"], bool(row["resettled"]))


@dataclass(frozen=True)
class RoundResults:
    round: Round
    members: list[MemberRoundScore]  # best first
    canrun: list[CanrunForecastRow] = field(default_factory=list)  # its forecasts in the round, by position

    @property
    def canrun_points(self) -> float | None:
        """canrun's points in the round (never ranked); None when it forecast nothing that settled."""
        scored = [f.points for f in self.canrun if f.status == "settled"]
        return round(sum(scored), 2) if scored else None


@dataclass(frozen=True)
class Settlement:
    settled: int  # open or locked predictions settled now
    confirmed: int  # verdict-based settlements a trial agreed with
    resettled: int  # verdict-based settlements a trial overturned


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    user_id: int
    points: float
    relative_points: float
    accuracy: float
    settled: int
    reached_at: float
    vs_canrun: float = 0.0


@dataclass(frozen=True)
class CanrunStanding:
    """canrun's own row on a leaderboard: shown among the members, marked, never ranked."""

    points: float
    settled: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.settled


@dataclass(frozen=True)
class LeaderboardPage:
    rows: list[LeaderboardRow]
    page: int
    page_size: int
    members: int  # everyone listed on some page
    canrun: CanrunStanding | None = None  # None until it has min_settled scored forecasts in the scope

    @property
    def pages(self) -> int:
        return max(1, -(-self.members // self.page_size))


@dataclass(frozen=True)
class MemberStats:
    user_id: int
    season_id: int | None
    settled: int  # scoring predictions
    correct: int
    accuracy: float | None
    mean_brier: float | None
    points: float
    relative_points: float
    calibration: list[Bucket]
    current_streak: int
    best_streak: int
    peeked: int  # settled but not scoring
    pending: int  # open or locked, any season
    rank: int | None  # None below min_settled
    vs_canrun: float = 0.0  # the sum over the scoring predictions canrun forecast too
    vs_canrun_scored: int = 0  # how many those are
    by_kind: list[KindAccuracy] = field(default_factory=list)  # accuracy per kind of model (core/failure_kinds.py)


def at_or_now(at: float | None) -> float:
    return time.time() if at is None else at


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be 'trial' or 'verdict', got {source!r}")


async def record_history(db: aiosqlite.Connection, prediction_ids: Collection[int], change: str, at: float) -> None:
    """Append the current state of these predictions to their history."""
    if prediction_ids:
        await db.execute(
            "INSERT INTO prediction_history (prediction_id, change, will_load, confidence, status, peeked, outcome,"
            " points, at) SELECT id, ?, will_load, confidence, status, peeked, outcome, points, ? FROM predictions"
            " WHERE id IN (SELECT value FROM json_each(?))", (change, at, json.dumps(list(prediction_ids))))


async def fetch_one(conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    async with conn.execute(sql, args) as cur:
        return await cur.fetchone()


async def fetch_all(conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
    async with conn.execute(sql, args) as cur:
        return list(await cur.fetchall())
