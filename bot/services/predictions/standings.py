"""The leaderboard and a member's stats, read from the standings table and the predictions."""

from __future__ import annotations

import collections

from bot.core.failure_kinds import accuracy_by_kind
from bot.core.scoring import Forecast, accuracy_of, calibration_of, mean_brier_of
from bot.services.predictions.records import (
    ALL_TIME, CanrunStanding, LeaderboardPage, LeaderboardRow, MemberStats, fetch_all, fetch_one,
)
from bot.services.predictions.summaries import histogram
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
    """A member's record, all time or for a season. Streaks follow settlement order."""
    scope = (guild_id, user_id, season_id or ALL_TIME)
    # The summary kept by every settlement (summaries.py): one row, however many predictions the member has.
    row = await fetch_one(
        store.conn, "SELECT s.peeked, s.vs_canrun_count, s.current_streak, s.best_streak, s.forecasts,"
                    " COALESCE(t.points, 0.0), COALESCE(t.relative_points, 0.0), COALESCE(t.vs_canrun, 0.0)"
                    " FROM member_summaries s LEFT JOIN standings t USING (guild_id, user_id, season_id)"
                    " WHERE s.guild_id = ? AND s.user_id = ? AND s.season_id = ?", scope)
    peeked, vs_canrun_count, current, best, forecasts, points, relative, vs_canrun = row or (0, 0, 0, 0, "{}", 0.0,
                                                                                             0.0, 0.0)
    counts: collections.Counter[Forecast] = collections.Counter()
    per_kind: dict[str, list[int]] = {}
    for (kind, forecast), n in histogram(forecasts).items():
        counts[forecast] += n
        if kind:
            tally = per_kind.setdefault(kind, [0, 0])
            tally[0] += n
            tally[1] += n * forecast.correct
    pending = await fetch_one(store.conn, "SELECT COUNT(*) FROM predictions WHERE guild_id = ? AND user_id = ?"
                                          " AND status IN ('open', 'locked')", (guild_id, user_id))
    return MemberStats(
        user_id, season_id, counts.total(), sum(n for f, n in counts.items() if f.correct), accuracy_of(counts),
        mean_brier_of(counts), points, relative, calibration_of(counts), current, best, peeked, pending[0],
        await _rank(store, guild_id, user_id, season_id, min_settled), vs_canrun, vs_canrun_count,
        accuracy_by_kind({kind: (n, correct) for kind, (n, correct) in per_kind.items()}))


async def _rank(store: Store, guild_id: int, user_id: int, season_id: int | None, min_settled: int) -> int | None:
    scope = (guild_id, season_id or ALL_TIME)
    me = await fetch_one(store.conn, "SELECT points, reached_at, settled FROM standings WHERE guild_id = ?"
                                     " AND season_id = ? AND user_id = ?", (*scope, user_id))
    if me is None or me["settled"] < min_settled:
        return None
    ahead = await fetch_one(store.conn,
                            "SELECT COUNT(*) FROM standings WHERE guild_id = ? AND season_id = ? AND settled >= ?"
                            " AND (points > ? OR (points = ? AND (reached_at, user_id) < (?, ?)))",
                            (*scope, min_settled, me["points"], me["points"], me["reached_at"], user_id))
    return ahead[0] + 1
