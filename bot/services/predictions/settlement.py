"""Settling predictions when an answer comes in (a verdict, or a trial that may overrule it), and the
leaderboard totals that follow."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from bot.core.scoring import brier_points, group_relative_points, points_vs, probability_of_loads
from bot.services.predictions.forecasts import canrun_in_group, forecasts_follow_trial, settle_open_forecast
from bot.services.predictions.records import Settlement, Source, at_or_now, check_source, fetch_all, record_history
from bot.services.predictions.seasons import season_at
from bot.services.predictions.upkeep import refresh_stale_streaks
from bot.services.store import Store


async def settle_repo(store: Store, guild_id: int | None, repo_id: str, outcome: bool, source: Source, *,
                      at: float | None = None) -> Settlement:
    """A /canrun (in a guild) or a trial (guild_id None: its result holds in every guild, as its lock does) of
    the repo happened at `at`. Settles the outside-round predictions last changed before it; a trial also
    confirms or re-settles (once) verdict-based settlements, rounds included. Idempotent: calling it again
    with the same arguments changes nothing."""
    check_source(source)
    at = at_or_now(at)
    async with store.transaction() as db:
        if guild_id is None:
            # Every guild where the repo is in play: members' predictions, canrun's own forecast, or a round (a
            # round nobody predicted still shows its outcome, and canrun's forecast there still scores).
            guilds = [r[0] for r in await fetch_all(
                db, "SELECT guild_id FROM predictions WHERE repo_id = ?1 UNION SELECT guild_id FROM canrun_forecasts"
                    " WHERE repo_id = ?1 UNION SELECT rounds.guild_id FROM round_repos JOIN rounds"
                    " ON rounds.id = round_repos.round_id WHERE round_repos.repo_id = ?1", (repo_id,))]
        else:
            guilds = [guild_id]
        done = [await _settle_in_guild(db, guild, repo_id, outcome, source, at) for guild in guilds]
    return Settlement(sum(d.settled for d in done), sum(d.confirmed for d in done), sum(d.resettled for d in done))


async def _settle_in_guild(db: aiosqlite.Connection, guild_id: int, repo_id: str, outcome: bool, source: str,
                           at: float) -> Settlement:
    groups: set[int | None] = set()
    users: set[int] = set()
    confirmed = resettled = 0
    if source == "trial":
        provisional = await fetch_all(db, "SELECT * FROM predictions WHERE repo_id = ? AND guild_id = ?"
                                          " AND status = 'settled' AND settled_by = 'verdict' AND settled_at <= ?",
                                      (repo_id, guild_id, at))
        agree = [r for r in provisional if bool(r["outcome"]) == outcome]
        overturn = [r for r in provisional if bool(r["outcome"]) != outcome]
        await _confirm(db, agree, at)
        await score_rows(db, overturn, {repo_id: (outcome, "trial")}, at, resettle=True)
        await _round_repos_follow_trial(db, guild_id, repo_id, outcome, at)
        confirmed, resettled = len(agree), len(overturn)
        groups |= {r["round_id"] for r in overturn}
        users |= {r["user_id"] for r in overturn}
        groups |= await forecasts_follow_trial(db, guild_id, repo_id, outcome, at)
    due = await fetch_all(db, "SELECT * FROM predictions WHERE repo_id = ? AND guild_id = ? AND round_id IS NULL"
                              " AND status IN ('open', 'locked') AND updated_at < ?", (repo_id, guild_id, at))
    season_id = await season_at(db, guild_id, at)
    await score_rows(db, due, {repo_id: (outcome, source)}, at, season_id=season_id)
    canrun_settled = await settle_open_forecast(db, guild_id, repo_id, None, outcome, source, at, season_id,
                                                made_before=at)
    if due or canrun_settled:
        groups.add(None)
        users |= {r["user_id"] for r in due}
    for round_id in groups:
        users |= await refresh_group(db, guild_id, repo_id, round_id)
    await refresh_stale_streaks(db, guild_id, users)
    return Settlement(len(due), confirmed, resettled)


async def score_rows(db: aiosqlite.Connection, rows: Sequence[Any], judged: Mapping[str, tuple[bool, str]],
                     at: float, *, season_id: int | None = None, resettle: bool = False) -> None:
    """Settle (or re-settle) these predictions by `judged`: repo -> (outcome, source). Points are exact hundredths
    (25 - k^2/100), so rounding only removes float noise and equal totals compare equal. Written in id order,
    which is settlement order at one time: each one then extends its member's streaks where they stand instead
    of making them stale (the triggers of migration 011)."""
    if not rows:
        return
    rows = sorted(rows, key=lambda r: r["id"])
    outcomes = [judged[r["repo_id"]] for r in rows]
    points = [None if r["peeked"] else _points(bool(r["will_load"]), r["confidence"], outcome)
              for r, (outcome, _) in zip(rows, outcomes, strict=True)]
    # the model's kind comes with the settlement (refresh_group would set it next): each change of a settled
    # prediction moves its member's tallies, by trigger, so one write instead of two
    settle = ("UPDATE predictions SET status = 'settled', outcome = ?, settled_by = ?, settled_at = ?, points = ?,"
              " relative_points = NULL, vs_canrun = NULL, kind = (SELECT f.kind FROM canrun_forecasts f"
              " WHERE f.guild_id = predictions.guild_id AND f.repo_id = predictions.repo_id"
              " AND COALESCE(f.round_id, 0) = COALESCE(predictions.round_id, 0))")
    each = zip(outcomes, points, rows, strict=True)
    if resettle:  # the season stays the one of the first settlement
        await db.executemany(settle + ", resettled = 1 WHERE id = ?",
                             [(outcome, source, at, p, r["id"]) for (outcome, source), p, r in each])
    else:
        await db.executemany(settle + ", season_id = ? WHERE id = ?",
                             [(outcome, source, at, p, season_id, r["id"]) for (outcome, source), p, r in each])
    await record_history(db, [r["id"] for r in rows], "resettled" if resettle else "settled", at)


def _points(will_load: bool, confidence: int, outcome: bool) -> float:
    return round(brier_points(probability_of_loads(will_load, confidence), outcome), 2)


async def _confirm(db: aiosqlite.Connection, rows: Sequence[Any], at: float) -> None:
    ids = [r["id"] for r in rows]
    if ids:
        await db.execute("UPDATE predictions SET settled_by = 'trial' WHERE id IN (SELECT value FROM json_each(?))",
                         (json.dumps(ids),))
        await record_history(db, ids, "confirmed", at)


async def _round_repos_follow_trial(db: aiosqlite.Connection, guild_id: int, repo_id: str, outcome: bool,
                                    at: float) -> None:
    """A trial judges the repo in the guild's rounds revealed by verdict, as it does their predictions."""
    await db.execute("UPDATE round_repos SET outcome = ?, settled_by = 'trial' WHERE repo_id = ?"
                     " AND settled_by = 'verdict' AND void_reason IS NULL AND round_id IN"
                     " (SELECT id FROM rounds WHERE guild_id = ? AND status = 'revealed' AND revealed_at <= ?)",
                     (outcome, repo_id, guild_id, at))


async def refresh_group(db: aiosqlite.Connection, guild_id: int, repo_id: str, round_id: int | None) -> set[int]:
    """Recompute the relative points of one group (guild, repo, round), against its median and against canrun's
    forecast there (which is in neither the group nor its median); its predictions take the model's kind from
    canrun's forecast. Writes only the rows that change (each write moves the standings, by trigger). Returns the
    group's members."""
    rows = await fetch_all(db, "SELECT id, user_id, points, relative_points, vs_canrun, kind FROM predictions"
                               " WHERE repo_id = ? AND guild_id = ? AND round_id IS ? AND status = 'settled'"
                               " AND points IS NOT NULL", (repo_id, guild_id, round_id))
    relative = group_relative_points([r["points"] for r in rows])
    canrun, kind = await canrun_in_group(db, guild_id, repo_id, round_id)
    changed = []
    for rel, r in zip(relative, rows, strict=True):
        now = (round(rel, 3), None if canrun is None else round(points_vs(r["points"], canrun), 2), kind)
        if now != (r["relative_points"], r["vs_canrun"], r["kind"]):
            changed.append((*now, r["id"]))
    await db.executemany("UPDATE predictions SET relative_points = ?, vs_canrun = ?, kind = ? WHERE id = ?", changed)
    return {r["user_id"] for r in rows}
