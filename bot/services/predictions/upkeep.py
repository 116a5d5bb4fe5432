"""The standings' upkeep. The database's triggers (migrations/011) keep each member's totals and tallies as
predictions change, one prediction at a time; what they cannot keep is a streak that a change out of settlement
order broke (a re-settle, a void, a late settlement): they mark it stale, and this module reads it again from the
member's history before the write commits. rebuild_standings recomputes everything from the predictions."""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection

import aiosqlite

from bot.core.scoring import streaks
from bot.services.predictions.forecasts import rebuild_canrun_standings
from bot.services.predictions.records import ALL_TIME, fetch_all
from bot.services.store import Store

# (current, best, settled_at, id of the last one) per scope: ALL_TIME or a season id
StreakRow = tuple[int, int, float, int]


async def refresh_stale_streaks(db: aiosqlite.Connection, guild_id: int, users: Collection[int]) -> None:
    """Read again the streaks the triggers marked stale among these members (usually none)."""
    if not users:
        return
    stale = await fetch_all(db, "SELECT DISTINCT user_id FROM standings WHERE guild_id = ? AND current_streak IS NULL"
                                " AND user_id IN (SELECT value FROM json_each(?))", (guild_id, json.dumps(sorted(users))))
    if stale:
        await _store_streaks(db, guild_id, await streaks_from_history(db, guild_id, [r[0] for r in stale]))


async def streaks_from_history(db: aiosqlite.Connection, guild_id: int,
                               users: Collection[int] | None) -> dict[tuple[int, int], StreakRow]:
    """Each member's streaks, all time and per season, from their scoring predictions in settlement order; keyed
    (user_id, scope). users None: everyone in the guild."""
    only = "" if users is None else " AND user_id IN (SELECT value FROM json_each(?))"
    args = (guild_id,) if users is None else (guild_id, json.dumps(sorted(users)))
    rows = await fetch_all(db, "SELECT user_id, season_id, will_load = outcome, settled_at, id FROM predictions"
                               " WHERE guild_id = ? AND status = 'settled' AND points IS NOT NULL" + only +
                               " ORDER BY user_id, settled_at, id", args)
    out: dict[tuple[int, int], StreakRow] = {}
    for user_id, history in itertools.groupby(rows, key=lambda r: r[0]):
        by_scope: dict[int, list] = {}
        for row in history:
            by_scope.setdefault(ALL_TIME, []).append(row)
            if row[1] is not None:
                by_scope.setdefault(row[1], []).append(row)
        for scope, in_order in by_scope.items():
            out[user_id, scope] = (*streaks(r[2] for r in in_order), in_order[-1][3], in_order[-1][4])
    return out


async def rebuild_standings(store: Store, guild_id: int) -> None:
    """Recompute every leaderboard total and tally of a guild, canrun's row too, from its predictions and canrun's
    forecasts (after a bulk import, or to check what the triggers keep)."""
    async with store.transaction() as db:
        await db.execute("DELETE FROM standings WHERE guild_id = ?", (guild_id,))
        await db.execute("DELETE FROM member_tallies WHERE guild_id = ?", (guild_id,))
        for scope, seasoned, by_season in ((str(ALL_TIME), "", ""),
                                           ("season_id", " AND season_id IS NOT NULL", ", season_id")):
            await db.execute(
                "INSERT INTO standings (guild_id, season_id, user_id, points, relative_points, settled, correct,"
                f" reached_at, vs_canrun, vs_canrun_settled) SELECT guild_id, {scope}, user_id, ROUND(SUM(points), 2),"
                " ROUND(TOTAL(relative_points), 3), COUNT(*), SUM(will_load = outcome), MAX(settled_at),"
                " ROUND(TOTAL(vs_canrun), 2), COUNT(vs_canrun) FROM predictions"
                f" WHERE guild_id = ? AND status = 'settled' AND points IS NOT NULL{seasoned} GROUP BY user_id{by_season}",
                (guild_id,))
            await db.execute(
                "INSERT INTO member_tallies SELECT guild_id, " + scope + ", user_id, COALESCE(kind, ''), will_load,"
                " outcome, CASE WHEN points IS NULL THEN 0 ELSE confidence END AS conf, COUNT(*) FROM predictions"
                f" WHERE guild_id = ? AND status = 'settled'{seasoned}"
                f" GROUP BY user_id{by_season}, COALESCE(kind, ''), will_load, outcome, conf", (guild_id,))
        await _store_streaks(db, guild_id, await streaks_from_history(db, guild_id, None))
        await rebuild_canrun_standings(db, guild_id)


async def _store_streaks(db: aiosqlite.Connection, guild_id: int,
                         found: dict[tuple[int, int], StreakRow]) -> None:
    await db.executemany("UPDATE standings SET current_streak = ?, best_streak = ?, last_settled_at = ?, last_id = ?"
                         " WHERE guild_id = ? AND user_id = ? AND season_id = ?",
                         [(*row, guild_id, user_id, scope) for (user_id, scope), row in found.items()])
