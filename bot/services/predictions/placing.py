"""Placing and changing predictions, and the locks a running trial puts on a repo."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from bot.core.scoring import probability_of_loads
from bot.services.predictions.records import (
    HistoryEntry, Prediction, Refused, at_or_now, fetch_all, fetch_one, record_history,
)
from bot.services.predictions.rounds import load_round
from bot.services.predictions.sightings import VERDICT_SIGHTINGS, SeenCallable, SightingSource, seen_at
from bot.services.store import Store


async def place_prediction(store: Store, *, guild_id: int, user_id: int, repo_id: str, will_load: bool,
                           confidence: int, round_id: int | None = None,
                           sources: Sequence[SightingSource] = (VERDICT_SIGHTINGS,),
                           also_seen: SeenCallable | None = None, at: float | None = None) -> Prediction:
    """Place or change the member's live prediction on a repo (in a round, or outside rounds)."""
    probability_of_loads(will_load, confidence)  # validates the confidence
    at = at_or_now(at)
    # Sightings recorded after `at` carry a later time, so looking before the transaction misses nothing.
    seen = await seen_at(store, user_id, repo_id, sources=sources, also_seen=also_seen)
    peeked = seen is not None and seen <= at
    async with store.transaction() as db:
        if await fetch_one(db, "SELECT 1 FROM repo_locks WHERE repo_id = ?", (repo_id,)):
            raise Refused(f"A trial of {repo_id} is running: predictions on it are locked.")
        if round_id is not None:
            await _check_round_takes(db, round_id, guild_id, repo_id, at)
        row = await fetch_one(db, "SELECT * FROM predictions WHERE guild_id = ? AND user_id = ? AND repo_id = ?"
                                  " AND round_id IS ?", (guild_id, user_id, repo_id, round_id))
        if row is None:
            cur = await db.execute(
                "INSERT INTO predictions (guild_id, user_id, repo_id, round_id, will_load, confidence, status,"
                " peeked, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (guild_id, user_id, repo_id, round_id, will_load, confidence, peeked, at, at))
            prediction_id, change = cur.lastrowid, "placed"
        else:
            current = Prediction.from_row(row)
            if current.status != "open":
                raise Refused(_not_open_reason(current))
            if (current.will_load, current.confidence) == (bool(will_load), confidence):
                return current  # nothing changes, so nothing to record (nor to mark peeked)
            await db.execute("UPDATE predictions SET will_load = ?, confidence = ?, peeked = MAX(peeked, ?),"
                             " updated_at = ? WHERE id = ?", (will_load, confidence, peeked, at, current.id))
            prediction_id, change = current.id, "changed"
        await record_history(db, [prediction_id], change, at)
        return Prediction.from_row(await fetch_one(db, "SELECT * FROM predictions WHERE id = ?", (prediction_id,)))


async def get_prediction(store: Store, guild_id: int, user_id: int, repo_id: str,
                         round_id: int | None = None) -> Prediction | None:
    row = await fetch_one(store.conn, "SELECT * FROM predictions WHERE guild_id = ? AND user_id = ? AND repo_id = ?"
                                      " AND round_id IS ?", (guild_id, user_id, repo_id, round_id))
    return Prediction.from_row(row) if row else None


async def prediction_history(store: Store, prediction_id: int) -> list[HistoryEntry]:
    rows = await fetch_all(store.conn, "SELECT change, will_load, confidence, status, peeked, outcome, points, at"
                                       " FROM prediction_history WHERE prediction_id = ? ORDER BY id", (prediction_id,))
    return [HistoryEntry(r["change"], bool(r["will_load"]), r["confidence"], r["status"], bool(r["peeked"]),
                         None if r["outcome"] is None else bool(r["outcome"]), r["points"], r["at"]) for r in rows]


def _not_open_reason(p: Prediction) -> str:
    if p.status == "locked":
        return f"Your prediction on {p.repo_id} is locked."
    if p.status == "settled":
        return f"Your prediction on {p.repo_id} is already settled."
    return f"Your prediction on {p.repo_id} was voided."


async def _check_round_takes(db: aiosqlite.Connection, round_id: int, guild_id: int, repo_id: str,
                             at: float) -> None:
    rnd = await load_round(db, round_id)
    if rnd is None or rnd.guild_id != guild_id:
        raise Refused("There is no such round here.")
    if rnd.status != "open" or (rnd.closes_at is not None and at >= rnd.closes_at):
        raise Refused(f"Round {round_id} is closed.")
    repo = next((r for r in rnd.repos if r.repo_id == repo_id), None)
    if repo is None:
        raise Refused(f"{repo_id} is not in round {round_id}.")
    if repo.void_reason is not None:
        raise Refused(f"{repo_id} was voided in round {round_id}: {repo.void_reason}")


async def lock_repo(store: Store, repo_id: str, *, at: float | None = None) -> int:
    """A trial of the repo started: lock its open predictions in every guild (a trial's result is the same
    everywhere) and refuse new ones until unlock_repo. Returns how many were locked."""
    at = at_or_now(at)
    async with store.transaction() as db:
        await db.execute("INSERT OR REPLACE INTO repo_locks (repo_id, locked_at) VALUES (?, ?)", (repo_id, at))
        rows = await fetch_all(db, "UPDATE predictions SET status = 'locked', locked_at = ?"
                                   " WHERE repo_id = ? AND status = 'open' RETURNING id", (at, repo_id))
        await record_history(db, [r["id"] for r in rows], "locked", at)
    return len(rows)


async def unlock_repo(store: Store, repo_id: str, *, at: float | None = None) -> int:
    """The trial ended: accept predictions again, and reopen those it locked that are still unsettled
    (unless their round has closed meanwhile). Returns how many reopened."""
    at = at_or_now(at)
    async with store.transaction() as db:
        await db.execute("DELETE FROM repo_locks WHERE repo_id = ?", (repo_id,))
        rows = await fetch_all(db, "UPDATE predictions SET status = 'open', locked_at = NULL"
                                   " WHERE repo_id = ? AND status = 'locked' AND (round_id IS NULL"
                                   " OR round_id IN (SELECT id FROM rounds WHERE status = 'open'))"
                                   " RETURNING id", (repo_id,))
        await record_history(db, [r["id"] for r in rows], "unlocked", at)
    return len(rows)


async def repo_locks(store: Store) -> list[tuple[str, float]]:
    """The repos locked by a running trial, and since when."""
    rows = await fetch_all(store.conn, "SELECT repo_id, locked_at FROM repo_locks ORDER BY repo_id")
    return [(r["repo_id"], r["locked_at"]) for r in rows]

