"""The leaderboard and a member's stats, read from the standings table and the predictions."""

from __future__ import annotations

import collections
import functools
from typing import Any

from bot.core.failure_kinds import KINDS, accuracy_by_kind
from bot.core.scoring import Forecast, accuracy_of, calibration_of, mean_brier_of
from bot.services.predictions.records import (
    ALL_TIME, CanrunStanding, LeaderboardPage, LeaderboardRow, MemberStats, fetch_all, fetch_one,
)
from bot.services.predictions.upkeep import streaks_from_history
from bot.services.store import Store


async def leaderboard(store: Store, guild_id: int, *, season_id: int | None = None, page: int = 1,
                      page_size: int = 10, min_settled: int = 5) -> LeaderboardPage:
    """One page of the guild's ranking, all time or for a season (order: see the module docstring)."""
    if page < 1 or page_size < 1:
        raise ValueError("page and page_size start at 1")
    scope = (guild_id, season_id or ALL_TIME, min_settled)
    count = await fetch_one(store.conn, "SELECT COUNT(*) FROM standings WHERE guild_id = ? AND season_id = ?"
                                        " AND settled >= ?", scope)
    offset = (page - 1) * page_size
    rows = await fetch_all(store.conn, "SELECT user_id, points, relative_points, settled, correct, reached_at,"
                                       " vs_canrun FROM standings WHERE guild_id = ? AND season_id = ? AND settled >= ?"
                                       " ORDER BY points DESC, reached_at, user_id LIMIT ? OFFSET ?",
                           (*scope, page_size, offset))
    return LeaderboardPage(
        [LeaderboardRow(offset + i, r["user_id"], r["points"], r["relative_points"], r["correct"] / r["settled"],
                        r["settled"], r["reached_at"], r["vs_canrun"]) for i, r in enumerate(rows, start=1)],
        page, page_size, count[0], await canrun_standing(store, guild_id, season_id, min_settled))


async def canrun_standing(store: Store, guild_id: int, season_id: int | None,
                          min_settled: int) -> CanrunStanding | None:
    """canrun's totals in the scope (canrun_standings, kept by every change of its forecasts); None below
    min_settled, as for a member."""
    row = await fetch_one(store.conn, "SELECT points, settled, correct FROM canrun_standings WHERE guild_id = ?"
                                      " AND season_id = ?", (guild_id, season_id or ALL_TIME))
    return CanrunStanding(row[0], row[1], row[2]) if row and row[1] and row[1] >= min_settled else None


async def member_stats(store: Store, guild_id: int, user_id: int, *, season_id: int | None = None,
                       min_settled: int = 5) -> MemberStats:
    """A member's record, all time or for a season: their standings row and tallies (a few rows, however long
    their history; the database keeps them). Streaks follow settlement order."""
    scope = (guild_id, user_id, season_id or ALL_TIME)
    row = await fetch_one(store.conn, "SELECT points, relative_points, settled, correct, reached_at, vs_canrun,"
                                      " vs_canrun_settled, current_streak, best_streak FROM standings"
                                      " WHERE guild_id = ? AND user_id = ? AND season_id = ?", scope)
    tallies = await fetch_all(store.conn, "SELECT kind, will_load, outcome, confidence, n FROM member_tallies"
                                          " WHERE guild_id = ? AND user_id = ? AND season_id = ?", scope)
    counts: collections.Counter[Forecast] = collections.Counter()
    per_kind: dict[str, list[int]] = {}
    peeked = 0
    for kind, will_load, outcome, confidence, n in tallies:
        if not confidence:  # peeked: settled, never scored
            peeked += n
            continue
        forecast = _forecast(will_load, confidence, outcome)
        counts[forecast] += n
        if kind in KINDS:
            tally = per_kind.setdefault(kind, [0, 0])
            tally[0] += n
            tally[1] += n * forecast.correct
    current = best = 0
    if row is not None:
        current, best = row["current_streak"], row["best_streak"]
        if current is None:  # stale (written outside the service, which reads them again before it commits)
            found = await streaks_from_history(store.conn, guild_id, [user_id])
            current, best = found[user_id, season_id or ALL_TIME][:2]
    pending = await fetch_one(store.conn, "SELECT COUNT(*) FROM predictions WHERE guild_id = ? AND user_id = ?"
                                          " AND status IN ('open', 'locked')", (guild_id, user_id))
    return MemberStats(
        user_id, season_id, row["settled"] if row else 0, row["correct"] if row else 0, accuracy_of(counts),
        mean_brier_of(counts), row["points"] if row else 0.0, row["relative_points"] if row else 0.0,
        calibration_of(counts), current, best, peeked, pending[0],
        await _rank(store, guild_id, user_id, season_id, min_settled, row), row["vs_canrun"] if row else 0.0,
        row["vs_canrun_settled"] if row else 0, accuracy_by_kind({k: (n, c) for k, (n, c) in per_kind.items()}))


@functools.cache
def _forecast(will_load: int, confidence: int, outcome: int) -> Forecast:
    """Shared instances: there are 200 distinct forecasts."""
    return Forecast(bool(will_load), confidence, bool(outcome))


async def _rank(store: Store, guild_id: int, user_id: int, season_id: int | None, min_settled: int,
                me: Any) -> int | None:
    """The member's place on the board, from their standings row `me` (None: not on it)."""
    if me is None or me["settled"] < min_settled:
        return None
    ahead = await fetch_one(store.conn,
                            "SELECT COUNT(*) FROM standings WHERE guild_id = ? AND season_id = ? AND settled >= ?"
                            " AND (points > ? OR (points = ? AND (reached_at, user_id) < (?, ?)))",
                            (guild_id, season_id or ALL_TIME, min_settled, me["points"], me["points"],
                             me["reached_at"], user_id))
    return ahead[0] + 1
