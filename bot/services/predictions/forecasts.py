"""canrun's own forecasts in the game: one per group (guild + repo + round, NULL outside rounds), stored when a
round opens or a /predict is placed, settled with the group's predictions by the same rules (a trial confirms or
re-scores a verdict-based settlement once), void with its round repo. They never enter the group median and never
take a rank: members' `vs_canrun` points are measured against them.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from bot.core.canrun_forecast import CanrunForecast
from bot.core.failure_kinds import failure_kind
from bot.core.scoring import brier_points
from bot.core.verdicts import LOADS
from bot.services.predictions.records import ALL_TIME, CanrunForecastRow, at_or_now, fetch_all, fetch_one
from bot.services.store import Store

# One group (guild, repo, round or NULL), written as canrun_forecasts_group's expression so the index answers it.
GROUP = "guild_id = ? AND repo_id = ? AND COALESCE(round_id, 0) = COALESCE(?, 0)"


async def record_forecast(store: Store, *, guild_id: int, repo_id: str, round_id: int | None,
                          forecast: CanrunForecast, fit: str | None = None, at: float | None = None) -> bool:
    """Store canrun's forecast for the group, unless it has one already (the first stays: it is the one made
    before anyone could know), with the kind of question the model is. Returns whether it was stored."""
    at = at_or_now(at)
    async with store.transaction() as db:
        cur = await db.execute(
            "INSERT OR IGNORE INTO canrun_forecasts (guild_id, repo_id, round_id, verdict, fit, kind, prior, trials,"
            " agreed, p_loads, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            (guild_id, repo_id, round_id, forecast.verdict, fit, failure_kind(forecast.verdict, fit), forecast.prior,
             forecast.trials, forecast.agreed, forecast.p_loads, at))
        return cur.rowcount == 1


async def has_forecast(store: Store, guild_id: int, repo_id: str, round_id: int | None = None) -> bool:
    return await fetch_one(store.conn, f"SELECT 1 FROM canrun_forecasts WHERE {GROUP}",
                           (guild_id, repo_id, round_id)) is not None


async def canrun_forecast(store: Store, guild_id: int, repo_id: str,
                          round_id: int | None = None) -> CanrunForecastRow | None:
    row = await fetch_one(store.conn, f"SELECT * FROM canrun_forecasts WHERE {GROUP}", (guild_id, repo_id, round_id))
    return CanrunForecastRow.from_row(row) if row else None


async def round_forecasts(conn: aiosqlite.Connection, round_id: int) -> list[CanrunForecastRow]:
    rows = await fetch_all(conn, "SELECT f.* FROM canrun_forecasts f JOIN round_repos r"
                                 " ON r.round_id = f.round_id AND r.repo_id = f.repo_id"
                                 " WHERE f.round_id = ? ORDER BY r.position", (round_id,))
    return [CanrunForecastRow.from_row(r) for r in rows]


def _points(p_loads: float, outcome: bool) -> float:
    return round(brier_points(p_loads, outcome), 2)


def _right(verdict: str, outcome: bool) -> int:
    """Whether canrun's verdict gave the right answer (loads or not): what its row counts as right."""
    return int((verdict == LOADS) == outcome)


async def _tally(db: aiosqlite.Connection, guild_id: int, season_id: int | None, points: float, settled: int,
                 correct: int) -> None:
    """Add to canrun's standing, all time and in the season (an update per forecast, not an aggregate: a guild
    with years of play has tens of thousands of forecasts)."""
    await db.executemany(
        "INSERT INTO canrun_standings (guild_id, season_id, points, settled, correct) VALUES (?, ?, ROUND(?, 2), ?, ?)"
        " ON CONFLICT (guild_id, season_id) DO UPDATE SET points = ROUND(points + excluded.points, 2),"
        " settled = settled + excluded.settled, correct = correct + excluded.correct",
        [(guild_id, scope, points, settled, correct)
         for scope in ((ALL_TIME,) if season_id is None else (ALL_TIME, season_id))])
    if settled < 0:  # a voided forecast may leave a scope with none, as a rebuild would
        await db.execute("DELETE FROM canrun_standings WHERE guild_id = ? AND settled = 0", (guild_id,))


async def _score(db: aiosqlite.Connection, rows: list[Any], outcome: bool, source: str, at: float, *,
                 season_id: int | None = None, resettle: bool = False) -> None:
    """Settle (or re-settle) these forecasts (rows of canrun_forecasts) and move canrun's standing with them."""
    settle = "UPDATE canrun_forecasts SET status = 'settled', outcome = ?, settled_by = ?, settled_at = ?, points = ?"
    for r in rows:
        points = _points(r["p_loads"], outcome)
        if resettle:  # the season stays the one of the first settlement
            await db.execute(settle + ", resettled = 1 WHERE id = ?", (outcome, source, at, points, r["id"]))
            await _tally(db, r["guild_id"], r["season_id"], points - r["points"], 0,
                         _right(r["verdict"], outcome) - _right(r["verdict"], bool(r["outcome"])))
        else:
            await db.execute(settle + ", season_id = ? WHERE id = ?", (outcome, source, at, points, season_id, r["id"]))
            await _tally(db, r["guild_id"], season_id, points, 1, _right(r["verdict"], outcome))


async def settle_open_forecast(db: aiosqlite.Connection, guild_id: int, repo_id: str, round_id: int | None,
                               outcome: bool, source: str, at: float, season_id: int | None, *,
                               made_before: float | None = None) -> bool:
    """Settle the group's open forecast (outside rounds only one made before the event, as for members).
    Returns whether there was one."""
    before = "" if made_before is None else " AND created_at < ?"
    rows = await fetch_all(db, f"SELECT * FROM canrun_forecasts WHERE {GROUP} AND status = 'open'{before}",
                           (guild_id, repo_id, round_id) + (() if made_before is None else (made_before,)))
    await _score(db, rows, outcome, source, at, season_id=season_id)
    return bool(rows)


async def forecasts_follow_trial(db: aiosqlite.Connection, guild_id: int, repo_id: str, outcome: bool,
                                 at: float) -> set[int | None]:
    """A trial confirms or re-scores (once) canrun's verdict-based settlements of the repo in the guild, as it does
    the members'. Returns the groups (round ids) whose canrun points changed."""
    rows = await fetch_all(db, "SELECT * FROM canrun_forecasts WHERE guild_id = ? AND repo_id = ?"
                               " AND status = 'settled' AND settled_by = 'verdict' AND settled_at <= ?",
                           (guild_id, repo_id, at))
    agree = [r["id"] for r in rows if bool(r["outcome"]) == outcome]
    overturn = [r for r in rows if bool(r["outcome"]) != outcome]
    await db.executemany("UPDATE canrun_forecasts SET settled_by = 'trial' WHERE id = ?", [(i,) for i in agree])
    await _score(db, overturn, outcome, "trial", at, resettle=True)
    return {r["round_id"] for r in overturn}


async def canrun_in_group(db: aiosqlite.Connection, guild_id: int, repo_id: str,
                          round_id: int | None) -> tuple[float | None, str | None]:
    """canrun's points in a group (None unless its forecast there is settled) and the kind of the model."""
    row = await fetch_one(db, f"SELECT points, status, kind FROM canrun_forecasts WHERE {GROUP}",
                          (guild_id, repo_id, round_id))
    if row is None:
        return None, None
    return (row["points"] if row["status"] == "settled" else None), row["kind"]


async def void_forecast(db: aiosqlite.Connection, round_id: int, repo_id: str) -> None:
    """The round repo was voided: so is canrun's forecast there, and its points leave canrun's standing."""
    for r in await fetch_all(db, "SELECT * FROM canrun_forecasts WHERE round_id = ? AND repo_id = ?"
                                 " AND status = 'settled'", (round_id, repo_id)):
        await _tally(db, r["guild_id"], r["season_id"], -r["points"], -1, -_right(r["verdict"], bool(r["outcome"])))
    await db.execute("UPDATE canrun_forecasts SET status = 'void', points = NULL WHERE round_id = ? AND repo_id = ?",
                     (round_id, repo_id))


async def rebuild_canrun_standings(db: aiosqlite.Connection, guild_id: int) -> None:
    """Recompute canrun's standings in a guild from its forecasts (after a bulk import, or to check)."""
    await db.execute("DELETE FROM canrun_standings WHERE guild_id = ?", (guild_id,))
    for scope, seasoned, by_season in ((str(ALL_TIME), "", "guild_id"),
                                       ("season_id", " AND season_id IS NOT NULL", "season_id")):
        await db.execute(
            "INSERT INTO canrun_standings (guild_id, season_id, points, settled, correct)"
            f" SELECT guild_id, {scope}, ROUND(SUM(points), 2), COUNT(*), SUM((verdict = 'loads') = outcome)"
            f" FROM canrun_forecasts WHERE guild_id = ? AND status = 'settled'{seasoned} GROUP BY {by_season}",
            (guild_id,))
