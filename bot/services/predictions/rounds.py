"""Rounds: up to 5 repos put to a guild at once; open -> closed (locked) -> revealed; voiding a repo."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import aiosqlite

from bot.services.predictions.forecasts import round_forecasts, settle_open_forecast, void_forecast
from bot.services.predictions.records import (
    MAX_ROUND_REPOS, MemberRoundScore, Refused, Round, RoundRepo, RoundResults, Source, at_or_now, check_source,
    fetch_all, fetch_one, record_history,
)
from bot.services.predictions.seasons import season_at
from bot.services.predictions.settlement import refresh_group, score_rows
from bot.services.predictions.upkeep import refresh_stale_streaks
from bot.services.store import Store


async def open_round(store: Store, *, guild_id: int, opened_by: int, repos: Sequence[str],
                     closes_at: float | None = None, channel_id: int | None = None,
                     at: float | None = None) -> Round:
    at = at_or_now(at)
    if not 1 <= len(repos) <= MAX_ROUND_REPOS:
        raise Refused(f"A round has 1 to {MAX_ROUND_REPOS} repos.")
    if len(set(repos)) != len(repos):
        raise Refused("A round cannot list a repo twice.")
    if closes_at is not None and closes_at <= at:
        raise Refused("The round would close before it opens.")
    async with store.transaction() as db:
        if await fetch_one(db, "SELECT 1 FROM rounds WHERE guild_id = ? AND status != 'revealed'", (guild_id,)):
            raise Refused("A round is already in play here: reveal it first.")
        cur = await db.execute("INSERT INTO rounds (guild_id, channel_id, opened_by, status, opened_at, closes_at)"
                               " VALUES (?, ?, ?, 'open', ?, ?)", (guild_id, channel_id, opened_by, at, closes_at))
        round_id = cur.lastrowid
        await db.executemany("INSERT INTO round_repos (round_id, repo_id, position) VALUES (?, ?, ?)",
                             [(round_id, repo, i) for i, repo in enumerate(repos, start=1)])
        return await load_round(db, round_id)


async def get_round(store: Store, round_id: int) -> Round | None:
    return await load_round(store.conn, round_id)


async def current_round(store: Store, guild_id: int) -> Round | None:
    """The guild's round in play (open or closed, not yet revealed)."""
    row = await fetch_one(store.conn, "SELECT id FROM rounds WHERE guild_id = ? AND status != 'revealed'", (guild_id,))
    return await load_round(store.conn, row["id"]) if row else None


async def latest_round(store: Store, guild_id: int) -> Round | None:
    """The guild's round in play, else its last revealed one (a repo can be voided after the reveal)."""
    row = await fetch_one(store.conn, "SELECT id FROM rounds WHERE guild_id = ? ORDER BY status != 'revealed' DESC,"
                                      " id DESC LIMIT 1", (guild_id,))
    return await load_round(store.conn, row["id"]) if row else None


async def close_round(store: Store, round_id: int, *, at: float | None = None) -> Round:
    """Lock the round's predictions: no more placements or changes."""
    at = at_or_now(at)
    async with store.transaction() as db:
        rnd = await load_round(db, round_id)
        if rnd is None or rnd.status != "open":
            raise Refused(f"Round {round_id} is not open.")
        rows = await fetch_all(db, "UPDATE predictions SET status = 'locked', locked_at = ?"
                                   " WHERE round_id = ? AND status = 'open' RETURNING id", (at, round_id))
        await record_history(db, [r["id"] for r in rows], "locked", at)
        await db.execute("UPDATE rounds SET status = 'closed', closed_at = ? WHERE id = ?", (at, round_id))
        return await load_round(db, round_id)


async def reveal_round(store: Store, round_id: int, outcomes: Mapping[str, tuple[bool, Source]], *,
                       at: float | None = None) -> RoundResults:
    """Settle a closed round: `outcomes` maps each repo not voided to (loaded?, 'trial' | 'verdict').
    Revealing an already revealed round changes nothing and returns its results."""
    at = at_or_now(at)
    async with store.transaction() as db:
        rnd = await load_round(db, round_id)
        if rnd is None:
            raise Refused("There is no such round.")
        if rnd.status == "open":
            raise Refused(f"Close round {round_id} before revealing it.")
        if rnd.status == "closed":
            await _settle_round(db, rnd, outcomes, at)
    return await round_results(store, round_id)


async def _settle_round(db: aiosqlite.Connection, rnd: Round, outcomes: Mapping[str, tuple[bool, Source]],
                        at: float) -> None:
    live = [r.repo_id for r in rnd.repos if r.void_reason is None]
    if set(live) - outcomes.keys() or outcomes.keys() - {r.repo_id for r in rnd.repos}:
        raise ValueError(f"round {rnd.id} needs outcomes for exactly {sorted(live)}, got {sorted(outcomes)}")
    season_id = await season_at(db, rnd.guild_id, at)
    for repo_id in live:
        check_source(outcomes[repo_id][1])
    # every repo's predictions at once, so that they are written in settlement order (id order: see score_rows)
    rows = await fetch_all(db, "SELECT * FROM predictions WHERE round_id = ? AND repo_id IN"
                               " (SELECT value FROM json_each(?)) AND status IN ('open', 'locked')",
                           (rnd.id, json.dumps(live)))
    await score_rows(db, rows, {repo_id: outcomes[repo_id] for repo_id in live}, at, season_id=season_id)
    users: set[int] = {r["user_id"] for r in rows}
    for repo_id in live:
        outcome, source = outcomes[repo_id]
        await settle_open_forecast(db, rnd.guild_id, repo_id, rnd.id, outcome, source, at, season_id)
        await db.execute("UPDATE round_repos SET outcome = ?, settled_by = ? WHERE round_id = ? AND repo_id = ?",
                         (outcome, source, rnd.id, repo_id))
        users |= await refresh_group(db, rnd.guild_id, repo_id, rnd.id)
    await db.execute("UPDATE rounds SET status = 'revealed', revealed_at = ? WHERE id = ?", (at, rnd.id))
    await refresh_stale_streaks(db, rnd.guild_id, users)


async def round_results(store: Store, round_id: int) -> RoundResults:
    rnd = await load_round(store.conn, round_id)
    if rnd is None:
        raise Refused("There is no such round.")
    rows = await fetch_all(store.conn,
                           "SELECT user_id, ROUND(TOTAL(points), 2) AS points, ROUND(TOTAL(relative_points), 3) AS rel,"
                           " COUNT(points) AS scored, SUM(peeked) AS peeked, ROUND(TOTAL(vs_canrun), 2) AS vs,"
                           " COUNT(vs_canrun) AS vs_scored FROM predictions"
                           " WHERE round_id = ? AND status = 'settled' GROUP BY user_id ORDER BY points DESC, user_id",
                           (round_id,))
    return RoundResults(rnd, [MemberRoundScore(r["user_id"], r["points"], r["rel"], r["scored"], r["peeked"],
                                               r["vs"] if r["vs_scored"] else None) for r in rows],
                        await round_forecasts(store.conn, round_id))


async def void_round_repo(store: Store, round_id: int, repo_id: str, *, reason: str, voided_by: int,
                          at: float | None = None) -> int:
    """Take a repo out of a round (before or after reveal): its predictions in this round become void and stop
    scoring. No other prediction changes. Returns how many were voided."""
    if not reason.strip():
        raise Refused("Say why the repo is voided.")
    at = at_or_now(at)
    async with store.transaction() as db:
        rnd = await load_round(db, round_id)
        repo = next((r for r in rnd.repos if r.repo_id == repo_id), None) if rnd else None
        if repo is None:
            raise Refused(f"{repo_id} is not in round {round_id}.")
        if repo.void_reason is not None:
            raise Refused(f"{repo_id} is already void in round {round_id}: {repo.void_reason}")
        await db.execute("UPDATE round_repos SET void_reason = ?, voided_by = ?, voided_at = ?"
                         " WHERE round_id = ? AND repo_id = ?", (reason.strip(), voided_by, at, round_id, repo_id))
        rows = await fetch_all(db, "UPDATE predictions SET status = 'void', points = NULL, relative_points = NULL,"
                                   " vs_canrun = NULL WHERE round_id = ? AND repo_id = ? RETURNING id, user_id",
                               (round_id, repo_id))
        await void_forecast(db, round_id, repo_id)
        await record_history(db, [r["id"] for r in rows], "voided", at)
        await refresh_stale_streaks(db, rnd.guild_id, {r["user_id"] for r in rows})
    return len(rows)


async def load_round(conn: aiosqlite.Connection, round_id: int) -> Round | None:
    row = await fetch_one(conn, "SELECT * FROM rounds WHERE id = ?", (round_id,))
    if row is None:
        return None
    repos = await fetch_all(conn, "SELECT repo_id, position, outcome, settled_by, void_reason FROM round_repos"
                                  " WHERE round_id = ? ORDER BY position", (round_id,))
    return Round(**dict(row), repos=tuple(
        RoundRepo(r["repo_id"], r["position"], None if r["outcome"] is None else bool(r["outcome"]),
                  r["settled_by"], r["void_reason"]) for r in repos))
