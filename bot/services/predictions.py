"""The prediction game over the store: placements, locks, rounds, settlement, seasons, leaderboard, stats.

How the bot drives it (every write is one transaction; nothing here knows Discord):
- `/predict`: place_prediction (outside rounds round_id=None; a round's buttons pass its id).
- `/canrun` of a repo: after recording the verdict, settle_repo(..., source="verdict").
- a trial: lock_repo when it starts (every guild); when it ends, settle_repo(None, ..., source="trial") if it
  judged load(), then unlock_repo (predictions left locked by a trial that could not tell reopen).
- rounds: open_round -> place_prediction(round_id=...) -> close_round -> reveal_round; void_round_repo.
The caller decides an outcome's source: a trial result when there is one, else the static verdict.

Rules and choices:
- Peeked: a placement or change made after the member saw the repo's answer (any sighting source, any guild)
  is marked peeked for good; it settles but never scores (points NULL) and is left out of every median.
- Relative points: a member's points minus the median points of the scoring predictions in the same group:
  same guild, same repo and same round (outside rounds, all outside-round predictions on the repo). A round is
  one question put to everyone at once, so its results do not move when the repo is settled again later, and
  voiding a round's repo touches no other prediction. Outside rounds the group grows with each settlement and
  its relative points are recomputed then.
- Seasons: a prediction belongs to the season active at the moment it first settles (its settlement time),
  none if no season is active then; a re-settle keeps that season.
- Re-settle: a verdict-based settlement is provisional. The first trial result of the repo after it settles
  it for good: if the trial agrees, settled_by becomes 'trial' ("confirmed", points unchanged); if not, the
  prediction is re-scored once (resettled = 1, "resettled" in its history). Trial-based settlements never
  change, so a prediction re-settles at most once whatever trials follow.
- Leaderboard order: total points (hundredths) descending; ties go to the member who reached that total
  first, i.e. whose latest scoring settlement (max settled_at in the scope; a re-settle counts as a
  settlement) is earliest; then the lower user id. Ranks are 1, 2, 3, ... with no shared ranks. Members with
  fewer than min_settled scoring predictions in the scope are not listed and take no rank.
"""

from __future__ import annotations

import collections
import functools
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Literal, Mapping, Sequence

import aiosqlite

from bot.core.scoring import (
    Bucket, Forecast, accuracy_of, brier_points, calibration_of, group_relative_points, mean_brier_of,
    probability_of_loads,
)
from bot.services.store import Store

Source = Literal["trial", "verdict"]
SOURCES = ("trial", "verdict")
MAX_ROUND_REPOS = 5
ALL_TIME = 0  # standings.season_id of the all-time totals


class Refused(Exception):
    """Not allowed now (locked, closed, already done, ...); the message is for the member."""


# ---- data out ------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class RoundResults:
    round: Round
    members: list[MemberRoundScore]  # best first


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


@dataclass(frozen=True)
class LeaderboardPage:
    rows: list[LeaderboardRow]
    page: int
    page_size: int
    members: int  # everyone listed on some page

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


# ---- who saw what --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SightingSource:
    """A table recording that a user saw a repo's answer, and when. Identifiers come from code, never users."""

    table: str
    repo_column: str
    user_column: str
    time_column: str


VERDICT_SIGHTINGS = SightingSource("verdict_history", "repo_id", "user_id", "created_at")
SeenCallable = Callable[[int, str], Awaitable[float | None]]  # (user_id, repo_id) -> earliest sighting


async def seen_at(store: Store, user_id: int, repo_id: str, *,
                  sources: Sequence[SightingSource] = (VERDICT_SIGHTINGS,),
                  also_seen: SeenCallable | None = None) -> float | None:
    """When this user first saw this repo's verdict or trial, in any guild; None if never."""
    times = []
    for s in sources:
        row = await _one(store.conn, f"SELECT MIN({s.time_column}) FROM {s.table}"
                                     f" WHERE {s.user_column} = ? AND {s.repo_column} = ?", (user_id, repo_id))
        times.append(row[0])
    if also_seen is not None:
        times.append(await also_seen(user_id, repo_id))
    return min((t for t in times if t is not None), default=None)


async def shown_in_guild_at(store: Store, guild_id: int, repo_id: str) -> float | None:
    """When this repo's answer was first posted in public in this guild: a /canrun there (any member's) or a
    revealed round. Everyone in the guild could have seen it from then on."""
    verdicts = await _one(store.conn, "SELECT MIN(created_at) FROM verdict_history WHERE repo_id = ?"
                                      " AND guild_id = ? AND verdict NOT IN ('gated', 'not_found')",
                          (repo_id, guild_id))
    rounds = await _one(store.conn, "SELECT MIN(r.revealed_at) FROM rounds r JOIN round_repos rr ON rr.round_id = r.id"
                                    " WHERE r.guild_id = ? AND rr.repo_id = ? AND r.revealed_at IS NOT NULL"
                                    " AND rr.void_reason IS NULL", (guild_id, repo_id))
    return min((t for t in (verdicts[0], rounds[0]) if t is not None), default=None)


# ---- placing -------------------------------------------------------------------------------------


async def place_prediction(store: Store, *, guild_id: int, user_id: int, repo_id: str, will_load: bool,
                           confidence: int, round_id: int | None = None,
                           sources: Sequence[SightingSource] = (VERDICT_SIGHTINGS,),
                           also_seen: SeenCallable | None = None, at: float | None = None) -> Prediction:
    """Place or change the member's live prediction on a repo (in a round, or outside rounds)."""
    probability_of_loads(will_load, confidence)  # validates the confidence
    at = _now(at)
    # Sightings recorded after `at` carry a later time, so looking before the transaction misses nothing.
    seen = await seen_at(store, user_id, repo_id, sources=sources, also_seen=also_seen)
    peeked = seen is not None and seen <= at
    async with store.transaction() as db:
        if await _one(db, "SELECT 1 FROM repo_locks WHERE repo_id = ?", (repo_id,)):
            raise Refused(f"A trial of {repo_id} is running: predictions on it are locked.")
        if round_id is not None:
            await _check_round_takes(db, round_id, guild_id, repo_id, at)
        row = await _one(db, "SELECT * FROM predictions WHERE guild_id = ? AND user_id = ? AND repo_id = ?"
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
        await _record(db, [prediction_id], change, at)
        return Prediction.from_row(await _one(db, "SELECT * FROM predictions WHERE id = ?", (prediction_id,)))


async def get_prediction(store: Store, guild_id: int, user_id: int, repo_id: str,
                         round_id: int | None = None) -> Prediction | None:
    row = await _one(store.conn, "SELECT * FROM predictions WHERE guild_id = ? AND user_id = ? AND repo_id = ?"
                                 " AND round_id IS ?", (guild_id, user_id, repo_id, round_id))
    return Prediction.from_row(row) if row else None


async def prediction_history(store: Store, prediction_id: int) -> list[HistoryEntry]:
    rows = await _all(store.conn, "SELECT change, will_load, confidence, status, peeked, outcome, points, at"
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
    rnd = await _load_round(db, round_id)
    if rnd is None or rnd.guild_id != guild_id:
        raise Refused("There is no such round here.")
    if rnd.status != "open" or (rnd.closes_at is not None and at >= rnd.closes_at):
        raise Refused(f"Round {round_id} is closed.")
    repo = next((r for r in rnd.repos if r.repo_id == repo_id), None)
    if repo is None:
        raise Refused(f"{repo_id} is not in round {round_id}.")
    if repo.void_reason is not None:
        raise Refused(f"{repo_id} was voided in round {round_id}: {repo.void_reason}")


# ---- trials lock repos ---------------------------------------------------------------------------


async def lock_repo(store: Store, repo_id: str, *, at: float | None = None) -> int:
    """A trial of the repo started: lock its open predictions in every guild (a trial's result is the same
    everywhere) and refuse new ones until unlock_repo. Returns how many were locked."""
    at = _now(at)
    async with store.transaction() as db:
        await db.execute("INSERT OR REPLACE INTO repo_locks (repo_id, locked_at) VALUES (?, ?)", (repo_id, at))
        rows = await _all(db, "UPDATE predictions SET status = 'locked', locked_at = ?"
                              " WHERE repo_id = ? AND status = 'open' RETURNING id", (at, repo_id))
        await _record(db, [r["id"] for r in rows], "locked", at)
    return len(rows)


async def unlock_repo(store: Store, repo_id: str, *, at: float | None = None) -> int:
    """The trial ended: accept predictions again, and reopen those it locked that are still unsettled
    (unless their round has closed meanwhile). Returns how many reopened."""
    at = _now(at)
    async with store.transaction() as db:
        await db.execute("DELETE FROM repo_locks WHERE repo_id = ?", (repo_id,))
        rows = await _all(db, "UPDATE predictions SET status = 'open', locked_at = NULL"
                              " WHERE repo_id = ? AND status = 'locked'"
                              " AND (round_id IS NULL OR round_id IN (SELECT id FROM rounds WHERE status = 'open'))"
                              " RETURNING id", (repo_id,))
        await _record(db, [r["id"] for r in rows], "unlocked", at)
    return len(rows)


async def release_stale_locks(store: Store, *, at: float | None = None) -> list[str]:
    """At start no trial is running yet, so any repo lock was left by a process that died mid-trial."""
    rows = await _all(store.conn, "SELECT repo_id FROM repo_locks ORDER BY repo_id")
    for row in rows:
        await unlock_repo(store, row["repo_id"], at=at)
    return [r["repo_id"] for r in rows]


# ---- settlement ----------------------------------------------------------------------------------


async def settle_repo(store: Store, guild_id: int | None, repo_id: str, outcome: bool, source: Source, *,
                      at: float | None = None) -> Settlement:
    """A /canrun (in a guild) or a trial (guild_id None: its result holds in every guild, as its lock does) of
    the repo happened at `at`. Settles the outside-round predictions last changed before it; a trial also
    confirms or re-settles (once) verdict-based settlements, rounds included. Idempotent: calling it again
    with the same arguments changes nothing."""
    _check_source(source)
    at = _now(at)
    async with store.transaction() as db:
        if guild_id is None:
            guilds = [r[0] for r in await _all(db, "SELECT DISTINCT guild_id FROM predictions WHERE repo_id = ?",
                                               (repo_id,))]
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
        provisional = await _all(db, "SELECT * FROM predictions WHERE repo_id = ? AND guild_id = ?"
                                     " AND status = 'settled' AND settled_by = 'verdict' AND settled_at <= ?",
                                 (repo_id, guild_id, at))
        agree = [r for r in provisional if bool(r["outcome"]) == outcome]
        overturn = [r for r in provisional if bool(r["outcome"]) != outcome]
        await _confirm(db, agree, at)
        await _score(db, overturn, outcome, "trial", at, resettle=True)
        await _round_repos_follow_trial(db, guild_id, repo_id, outcome, at)
        confirmed, resettled = len(agree), len(overturn)
        groups |= {r["round_id"] for r in overturn}
        users |= {r["user_id"] for r in overturn}
    due = await _all(db, "SELECT * FROM predictions WHERE repo_id = ? AND guild_id = ? AND round_id IS NULL"
                         " AND status IN ('open', 'locked') AND updated_at < ?", (repo_id, guild_id, at))
    await _score(db, due, outcome, source, at, season_id=await _season_at(db, guild_id, at))
    if due:
        groups.add(None)
        users |= {r["user_id"] for r in due}
    for round_id in groups:
        users |= await _refresh_group(db, guild_id, repo_id, round_id)
    await _refresh_standings(db, guild_id, users)
    return Settlement(len(due), confirmed, resettled)


async def _score(db: aiosqlite.Connection, rows: Sequence[Any], outcome: bool, source: str, at: float, *,
                 season_id: int | None = None, resettle: bool = False) -> None:
    """Settle (or re-settle) these predictions. Points are exact hundredths (25 − k²/100), so rounding only
    removes float noise and equal totals compare equal."""
    if not rows:
        return
    points = [None if r["peeked"] else _points(bool(r["will_load"]), r["confidence"], outcome) for r in rows]
    settle = ("UPDATE predictions SET status = 'settled', outcome = ?, settled_by = ?, settled_at = ?, points = ?,"
              " relative_points = NULL")
    if resettle:  # the season stays the one of the first settlement
        await db.executemany(settle + ", resettled = 1 WHERE id = ?",
                             [(outcome, source, at, p, r["id"]) for p, r in zip(points, rows)])
    else:
        await db.executemany(settle + ", season_id = ? WHERE id = ?",
                             [(outcome, source, at, p, season_id, r["id"]) for p, r in zip(points, rows)])
    await _record(db, [r["id"] for r in rows], "resettled" if resettle else "settled", at)


def _points(will_load: bool, confidence: int, outcome: bool) -> float:
    return round(brier_points(probability_of_loads(will_load, confidence), outcome), 2)


async def _confirm(db: aiosqlite.Connection, rows: Sequence[Any], at: float) -> None:
    ids = [r["id"] for r in rows]
    if ids:
        await db.execute("UPDATE predictions SET settled_by = 'trial' WHERE id IN (SELECT value FROM json_each(?))",
                         (json.dumps(ids),))
        await _record(db, ids, "confirmed", at)


async def _round_repos_follow_trial(db: aiosqlite.Connection, guild_id: int, repo_id: str, outcome: bool,
                                    at: float) -> None:
    """A trial judges the repo in the guild's rounds revealed by verdict, as it does their predictions."""
    await db.execute("UPDATE round_repos SET outcome = ?, settled_by = 'trial' WHERE repo_id = ?"
                     " AND settled_by = 'verdict' AND void_reason IS NULL AND round_id IN"
                     " (SELECT id FROM rounds WHERE guild_id = ? AND status = 'revealed' AND revealed_at <= ?)",
                     (outcome, repo_id, guild_id, at))


async def _refresh_group(db: aiosqlite.Connection, guild_id: int, repo_id: str, round_id: int | None) -> set[int]:
    """Recompute the relative points of one group (guild, repo, round). Returns its members."""
    rows = await _all(db, "SELECT id, user_id, points FROM predictions WHERE repo_id = ? AND guild_id = ?"
                          " AND round_id IS ? AND status = 'settled' AND points IS NOT NULL",
                      (repo_id, guild_id, round_id))
    relative = group_relative_points([r["points"] for r in rows])
    await db.executemany("UPDATE predictions SET relative_points = ? WHERE id = ?",
                         [(round(rel, 3), r["id"]) for rel, r in zip(relative, rows)])
    return {r["user_id"] for r in rows}


async def _refresh_standings(db: aiosqlite.Connection, guild_id: int, users: Collection[int] | None) -> None:
    """Recompute the leaderboard totals of these members (the whole guild's when None), all time and per season."""
    if users is not None and not users:
        return
    only = "" if users is None else " AND user_id IN (SELECT value FROM json_each(:users))"
    args = {"guild": guild_id, "users": json.dumps(sorted(users or ())), "all_time": ALL_TIME}
    await db.execute("DELETE FROM standings WHERE guild_id = :guild" + only, args)
    for scope, seasoned, by_season in ((":all_time", "", ""),
                                       ("season_id", " AND season_id IS NOT NULL", ", season_id")):
        await db.execute(
            "INSERT INTO standings (guild_id, season_id, user_id, points, relative_points, settled, correct,"
            f" reached_at) SELECT guild_id, {scope}, user_id, ROUND(SUM(points), 2), ROUND(TOTAL(relative_points), 3),"
            " COUNT(*), SUM(will_load = outcome), MAX(settled_at) FROM predictions"
            f" WHERE guild_id = :guild AND status = 'settled' AND points IS NOT NULL{only}{seasoned}"
            f" GROUP BY user_id{by_season}", args)


async def rebuild_standings(store: Store, guild_id: int) -> None:
    """Recompute every leaderboard total of a guild from its predictions (after a bulk import, or to check)."""
    async with store.transaction() as db:
        await _refresh_standings(db, guild_id, None)


# ---- rounds --------------------------------------------------------------------------------------


async def open_round(store: Store, *, guild_id: int, opened_by: int, repos: Sequence[str],
                     closes_at: float | None = None, channel_id: int | None = None,
                     at: float | None = None) -> Round:
    at = _now(at)
    if not 1 <= len(repos) <= MAX_ROUND_REPOS:
        raise Refused(f"A round has 1 to {MAX_ROUND_REPOS} repos.")
    if len(set(repos)) != len(repos):
        raise Refused("A round cannot list a repo twice.")
    if closes_at is not None and closes_at <= at:
        raise Refused("The round would close before it opens.")
    async with store.transaction() as db:
        if await _one(db, "SELECT 1 FROM rounds WHERE guild_id = ? AND status != 'revealed'", (guild_id,)):
            raise Refused("A round is already in play here: reveal it first.")
        cur = await db.execute("INSERT INTO rounds (guild_id, channel_id, opened_by, status, opened_at, closes_at)"
                               " VALUES (?, ?, ?, 'open', ?, ?)", (guild_id, channel_id, opened_by, at, closes_at))
        round_id = cur.lastrowid
        await db.executemany("INSERT INTO round_repos (round_id, repo_id, position) VALUES (?, ?, ?)",
                             [(round_id, repo, i) for i, repo in enumerate(repos, start=1)])
        return await _load_round(db, round_id)


async def get_round(store: Store, round_id: int) -> Round | None:
    return await _load_round(store.conn, round_id)


async def current_round(store: Store, guild_id: int) -> Round | None:
    """The guild's round in play (open or closed, not yet revealed)."""
    row = await _one(store.conn, "SELECT id FROM rounds WHERE guild_id = ? AND status != 'revealed'", (guild_id,))
    return await _load_round(store.conn, row["id"]) if row else None


async def latest_round(store: Store, guild_id: int) -> Round | None:
    """The guild's round in play, else its last revealed one (a repo can be voided after the reveal)."""
    row = await _one(store.conn, "SELECT id FROM rounds WHERE guild_id = ? ORDER BY status != 'revealed' DESC,"
                                 " id DESC LIMIT 1", (guild_id,))
    return await _load_round(store.conn, row["id"]) if row else None


async def close_round(store: Store, round_id: int, *, at: float | None = None) -> Round:
    """Lock the round's predictions: no more placements or changes."""
    at = _now(at)
    async with store.transaction() as db:
        rnd = await _load_round(db, round_id)
        if rnd is None or rnd.status != "open":
            raise Refused(f"Round {round_id} is not open.")
        rows = await _all(db, "UPDATE predictions SET status = 'locked', locked_at = ?"
                              " WHERE round_id = ? AND status = 'open' RETURNING id", (at, round_id))
        await _record(db, [r["id"] for r in rows], "locked", at)
        await db.execute("UPDATE rounds SET status = 'closed', closed_at = ? WHERE id = ?", (at, round_id))
        return await _load_round(db, round_id)


async def reveal_round(store: Store, round_id: int, outcomes: Mapping[str, tuple[bool, Source]], *,
                       at: float | None = None) -> RoundResults:
    """Settle a closed round: `outcomes` maps each repo not voided to (loaded?, 'trial' | 'verdict').
    Revealing an already revealed round changes nothing and returns its results."""
    at = _now(at)
    async with store.transaction() as db:
        rnd = await _load_round(db, round_id)
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
    season_id = await _season_at(db, rnd.guild_id, at)
    users: set[int] = set()
    for repo_id in live:
        outcome, source = outcomes[repo_id]
        _check_source(source)
        rows = await _all(db, "SELECT * FROM predictions WHERE round_id = ? AND repo_id = ?"
                              " AND status IN ('open', 'locked')", (rnd.id, repo_id))
        await _score(db, rows, outcome, source, at, season_id=season_id)
        await db.execute("UPDATE round_repos SET outcome = ?, settled_by = ? WHERE round_id = ? AND repo_id = ?",
                         (outcome, source, rnd.id, repo_id))
        users |= {r["user_id"] for r in rows} | await _refresh_group(db, rnd.guild_id, repo_id, rnd.id)
    await db.execute("UPDATE rounds SET status = 'revealed', revealed_at = ? WHERE id = ?", (at, rnd.id))
    await _refresh_standings(db, rnd.guild_id, users)


async def round_results(store: Store, round_id: int) -> RoundResults:
    rnd = await _load_round(store.conn, round_id)
    if rnd is None:
        raise Refused("There is no such round.")
    rows = await _all(store.conn,
                      "SELECT user_id, ROUND(TOTAL(points), 2) AS points, ROUND(TOTAL(relative_points), 3) AS rel,"
                      " COUNT(points) AS scored, SUM(peeked) AS peeked FROM predictions"
                      " WHERE round_id = ? AND status = 'settled' GROUP BY user_id ORDER BY points DESC, user_id",
                      (round_id,))
    return RoundResults(rnd, [MemberRoundScore(r["user_id"], r["points"], r["rel"], r["scored"], r["peeked"])
                              for r in rows])


async def void_round_repo(store: Store, round_id: int, repo_id: str, *, reason: str, voided_by: int,
                          at: float | None = None) -> int:
    """Take a repo out of a round (before or after reveal): its predictions in this round become void and stop
    scoring. No other prediction changes. Returns how many were voided."""
    if not reason.strip():
        raise Refused("Say why the repo is voided.")
    at = _now(at)
    async with store.transaction() as db:
        rnd = await _load_round(db, round_id)
        repo = next((r for r in rnd.repos if r.repo_id == repo_id), None) if rnd else None
        if repo is None:
            raise Refused(f"{repo_id} is not in round {round_id}.")
        if repo.void_reason is not None:
            raise Refused(f"{repo_id} is already void in round {round_id}: {repo.void_reason}")
        await db.execute("UPDATE round_repos SET void_reason = ?, voided_by = ?, voided_at = ?"
                         " WHERE round_id = ? AND repo_id = ?", (reason.strip(), voided_by, at, round_id, repo_id))
        rows = await _all(db, "UPDATE predictions SET status = 'void', points = NULL, relative_points = NULL"
                              " WHERE round_id = ? AND repo_id = ? RETURNING id, user_id", (round_id, repo_id))
        await _record(db, [r["id"] for r in rows], "voided", at)
        await _refresh_standings(db, rnd.guild_id, {r["user_id"] for r in rows})
    return len(rows)


async def _load_round(conn: aiosqlite.Connection, round_id: int) -> Round | None:
    row = await _one(conn, "SELECT * FROM rounds WHERE id = ?", (round_id,))
    if row is None:
        return None
    repos = await _all(conn, "SELECT repo_id, position, outcome, settled_by, void_reason FROM round_repos"
                             " WHERE round_id = ? ORDER BY position", (round_id,))
    return Round(**dict(row), repos=tuple(
        RoundRepo(r["repo_id"], r["position"], None if r["outcome"] is None else bool(r["outcome"]),
                  r["settled_by"], r["void_reason"]) for r in repos))


# ---- seasons -------------------------------------------------------------------------------------


async def start_season(store: Store, guild_id: int, name: str, *, at: float | None = None) -> Season:
    name, at = name.strip(), _now(at)
    if not name:
        raise Refused("A season needs a name.")
    async with store.transaction() as db:
        running = await _one(db, "SELECT name FROM seasons WHERE guild_id = ? AND ended_at IS NULL", (guild_id,))
        if running:
            raise Refused(f"Season {running['name']} is running: end it first.")
        if await _one(db, "SELECT 1 FROM seasons WHERE guild_id = ? AND name = ?", (guild_id, name)):
            raise Refused(f"There was already a season called {name}.")
        cur = await db.execute("INSERT INTO seasons (guild_id, name, started_at) VALUES (?, ?, ?)",
                               (guild_id, name, at))
        return Season(cur.lastrowid, guild_id, name, at, None)


async def end_season(store: Store, guild_id: int, *, at: float | None = None) -> Season:
    at = _now(at)
    async with store.transaction() as db:
        row = await _one(db, "SELECT * FROM seasons WHERE guild_id = ? AND ended_at IS NULL", (guild_id,))
        if row is None:
            raise Refused("No season is running.")
        await db.execute("UPDATE seasons SET ended_at = ? WHERE id = ?", (at, row["id"]))
        return Season(**{**dict(row), "ended_at": at})


async def active_season(store: Store, guild_id: int) -> Season | None:
    row = await _one(store.conn, "SELECT * FROM seasons WHERE guild_id = ? AND ended_at IS NULL", (guild_id,))
    return Season(**dict(row)) if row else None


async def season_by_name(store: Store, guild_id: int, name: str) -> Season | None:
    row = await _one(store.conn, "SELECT * FROM seasons WHERE guild_id = ? AND name = ?", (guild_id, name.strip()))
    return Season(**dict(row)) if row else None


async def _season_at(db: aiosqlite.Connection, guild_id: int, at: float) -> int | None:
    row = await _one(db, "SELECT id FROM seasons WHERE guild_id = ? AND started_at <= ?"
                         " AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at DESC LIMIT 1",
                     (guild_id, at, at))
    return row["id"] if row else None


# ---- leaderboard and stats -----------------------------------------------------------------------


async def leaderboard(store: Store, guild_id: int, *, season_id: int | None = None, page: int = 1,
                      page_size: int = 10, min_settled: int = 5) -> LeaderboardPage:
    """One page of the guild's ranking, all time or for a season (order: see the module docstring)."""
    if page < 1 or page_size < 1:
        raise ValueError("page and page_size start at 1")
    scope = (guild_id, season_id or ALL_TIME, min_settled)
    count = await _one(store.conn, "SELECT COUNT(*) FROM standings WHERE guild_id = ? AND season_id = ?"
                                   " AND settled >= ?", scope)
    offset = (page - 1) * page_size
    rows = await _all(store.conn, "SELECT user_id, points, relative_points, settled, correct, reached_at"
                                  " FROM standings WHERE guild_id = ? AND season_id = ? AND settled >= ?"
                                  " ORDER BY points DESC, reached_at, user_id LIMIT ? OFFSET ?",
                      (*scope, page_size, offset))
    return LeaderboardPage(
        [LeaderboardRow(offset + i, r["user_id"], r["points"], r["relative_points"], r["correct"] / r["settled"],
                        r["settled"], r["reached_at"]) for i, r in enumerate(rows, start=1)],
        page, page_size, count[0])


async def member_stats(store: Store, guild_id: int, user_id: int, *, season_id: int | None = None,
                       min_settled: int = 5) -> MemberStats:
    """A member's record, all time or for a season. Streaks follow settlement order."""
    in_season, args = ("", (guild_id, user_id))
    if season_id is not None:
        in_season, args = " AND season_id = ?", (guild_id, user_id, season_id)
    settled = f"FROM predictions WHERE guild_id = ? AND user_id = ? AND status = 'settled'{in_season}"
    totals = await _one(store.conn, "SELECT ROUND(TOTAL(points), 2), ROUND(TOTAL(relative_points), 3),"
                                    f" COUNT(*) - COUNT(points) {settled}", args)
    # A busy member has thousands of settled predictions but only 200 distinct (answer, confidence, outcome):
    # each comes back as one small integer code, so counting and the streaks run at C speed.
    codes = [row[0] for row in await _all(
        store.conn, f"SELECT (will_load * 2 + outcome) * 100 + confidence {settled} AND points IS NOT NULL"
                    " ORDER BY settled_at, id", args)]
    counts = {_decode(code): n for code, n in collections.Counter(codes).items()}
    current, best = _streaks(codes)
    pending = await _one(store.conn, "SELECT COUNT(*) FROM predictions WHERE guild_id = ? AND user_id = ?"
                                     " AND status IN ('open', 'locked')", (guild_id, user_id))
    return MemberStats(
        user_id, season_id, len(codes), sum(n for f, n in counts.items() if f.correct), accuracy_of(counts),
        mean_brier_of(counts), totals[0], totals[1], calibration_of(counts), current, best, totals[2], pending[0],
        await _rank(store, guild_id, user_id, season_id, min_settled))


def _decode(code: int) -> Forecast:
    kind, confidence = divmod(code, 100)
    return _forecast(kind >> 1, confidence, kind & 1)


def _streaks(codes: Sequence[int]) -> tuple[int, int]:
    """scoring.streaks over the codes (right: kind 0 or 3, i.e. will_load == outcome), with string operations:
    a member may have thousands of settled predictions."""
    runs = bytes(map(_RIGHT.__getitem__, codes)).split(b"0")
    return len(runs[-1]), max(map(len, runs))


_RIGHT = bytes(ord("1") if code // 100 in (0, 3) else ord("0") for code in range(400))  # code -> b"1" if right


@functools.cache
def _forecast(will_load: int, confidence: int, outcome: int) -> Forecast:
    """Shared instances: there are 200 distinct forecasts, and a busy member has thousands of rows."""
    return Forecast(bool(will_load), confidence, bool(outcome))


async def _rank(store: Store, guild_id: int, user_id: int, season_id: int | None, min_settled: int) -> int | None:
    scope = (guild_id, season_id or ALL_TIME)
    me = await _one(store.conn, "SELECT points, reached_at, settled FROM standings WHERE guild_id = ?"
                                " AND season_id = ? AND user_id = ?", (*scope, user_id))
    if me is None or me["settled"] < min_settled:
        return None
    ahead = await _one(store.conn,
                       "SELECT COUNT(*) FROM standings WHERE guild_id = ? AND season_id = ? AND settled >= ?"
                       " AND (points > ? OR (points = ? AND (reached_at, user_id) < (?, ?)))",
                       (*scope, min_settled, me["points"], me["points"], me["reached_at"], user_id))
    return ahead[0] + 1


# ---- helpers -------------------------------------------------------------------------------------


def _now(at: float | None) -> float:
    return time.time() if at is None else at


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be 'trial' or 'verdict', got {source!r}")


async def _record(db: aiosqlite.Connection, prediction_ids: Collection[int], change: str, at: float) -> None:
    """Append the current state of these predictions to their history."""
    if prediction_ids:
        await db.execute(
            "INSERT INTO prediction_history (prediction_id, change, will_load, confidence, status, peeked, outcome,"
            " points, at) SELECT id, ?, will_load, confidence, status, peeked, outcome, points, ? FROM predictions"
            " WHERE id IN (SELECT value FROM json_each(?))", (change, at, json.dumps(list(prediction_ids))))


async def _one(conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    async with conn.execute(sql, args) as cur:
        return await cur.fetchone()


async def _all(conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
    async with conn.execute(sql, args) as cur:
        return list(await cur.fetchall())
