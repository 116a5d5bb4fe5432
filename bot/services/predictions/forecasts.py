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
from bot.services.predictions.records import CanrunForecastRow, at_or_now, fetch_all, fetch_one
from bot.services.store import Store

GROUP = "guild_id = ? AND repo_id = ? AND round_id IS ?"


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


async def _score(db: aiosqlite.Connection, rows: list[Any], outcome: bool, source: str, at: float, *,
                 season_id: int | None = None, resettle: bool = False) -> None:
    settle = "UPDATE canrun_forecasts SET status = 'settled', outcome = ?, settled_by = ?, settled_at = ?, points = ?"
    if resettle:  # the season stays the one of the first settlement
        await db.executemany(settle + ", resettled = 1 WHERE id = ?",
                             [(outcome, source, at, _points(r["p_loads"], outcome), r["id"]) for r in rows])
    else:
        await db.executemany(settle + ", season_id = ? WHERE id = ?",
                             [(outcome, source, at, _points(r["p_loads"], outcome), season_id, r["id"])
                              for r in rows])


async def settle_open_forecast(db: aiosqlite.Connection, guild_id: int, repo_id: str, round_id: int | None,
                               outcome: bool, source: str, at: float, season_id: int | None, *,
                               made_before: float | None = None) -> bool:
    """Settle the group's open forecast (outside rounds only one made before the event, as for members).
    Returns whether there was one."""
    before = "" if made_before is None else " AND created_at < ?"
    rows = await fetch_all(db, f"SELECT id, p_loads FROM canrun_forecasts WHERE {GROUP} AND status = 'open'{before}",
                           (guild_id, repo_id, round_id) + (() if made_before is None else (made_before,)))
    await _score(db, rows, outcome, source, at, season_id=season_id)
    return bool(rows)


async def forecasts_follow_trial(db: aiosqlite.Connection, guild_id: int, repo_id: str, outcome: bool,
                                 at: float) -> set[int | None]:
    """A trial confirms or re-scores (once) canrun's verdict-based settlements of the repo in the guild, as it does
    the members'. Returns the groups (round ids) whose canrun points changed."""
    rows = await fetch_all(db, "SELECT id, round_id, p_loads, outcome FROM canrun_forecasts WHERE guild_id = ?"
                               " AND repo_id = ? AND status = 'settled' AND settled_by = 'verdict' AND settled_at <= ?",
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
    await db.execute("UPDATE canrun_forecasts SET status = 'void', points = NULL WHERE round_id = ? AND repo_id = ?",
                     (round_id, repo_id))
