"""Leaderboard seasons: at most one running per guild; a prediction counts in the season of its settlement."""

from __future__ import annotations

import aiosqlite

from bot.services.predictions.records import Refused, Season, at_or_now, fetch_one
from bot.services.store import Store


async def start_season(store: Store, guild_id: int, name: str, *, at: float | None = None) -> Season:
    name, at = name.strip(), at_or_now(at)
    if not name:
        raise Refused("A season needs a name.")
    async with store.transaction() as db:
        running = await fetch_one(db, "SELECT name FROM seasons WHERE guild_id = ? AND ended_at IS NULL", (guild_id,))
        if running:
            raise Refused(f"Season {running['name']} is running: end it first.")
        if await fetch_one(db, "SELECT 1 FROM seasons WHERE guild_id = ? AND name = ?", (guild_id, name)):
            raise Refused(f"There was already a season called {name}.")
        cur = await db.execute("INSERT INTO seasons (guild_id, name, started_at) VALUES (?, ?, ?)",
                               (guild_id, name, at))
        return Season(cur.lastrowid, guild_id, name, at, None)


async def end_season(store: Store, guild_id: int, *, at: float | None = None) -> Season:
    at = at_or_now(at)
    async with store.transaction() as db:
        row = await fetch_one(db, "SELECT * FROM seasons WHERE guild_id = ? AND ended_at IS NULL", (guild_id,))
        if row is None:
            raise Refused("No season is running.")
        await db.execute("UPDATE seasons SET ended_at = ? WHERE id = ?", (at, row["id"]))
        return Season(**{**dict(row), "ended_at": at})


async def active_season(store: Store, guild_id: int) -> Season | None:
    row = await fetch_one(store.conn, "SELECT * FROM seasons WHERE guild_id = ? AND ended_at IS NULL", (guild_id,))
    return Season(**dict(row)) if row else None


async def season_by_name(store: Store, guild_id: int, name: str) -> Season | None:
    row = await fetch_one(store.conn, "SELECT * FROM seasons WHERE guild_id = ? AND name = ?", (guild_id, name.strip()))
    return Season(**dict(row)) if row else None


async def season_at(db: aiosqlite.Connection, guild_id: int, at: float) -> int | None:
    row = await fetch_one(db, "SELECT id FROM seasons WHERE guild_id = ? AND started_at <= ?"
                              " AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at DESC LIMIT 1",
                          (guild_id, at, at))
    return row["id"] if row else None
