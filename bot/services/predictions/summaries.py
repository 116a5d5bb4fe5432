"""Each member's /mystats summary (all time and per season), kept beside the standings by every settlement.

A busy member has thousands of settled predictions; /mystats reads one row instead of walking them: the
histogram of their forecasts (kind of model x answer x outcome x confidence: at most 8 x 200 codes), their streaks
and two counts. Written by refresh_summaries, inside the transaction that refreshes the same members' standings;
migration 011 fills it once.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Collection
from typing import Any

import aiosqlite

from bot.core.scoring import Forecast, streaks
from bot.services.predictions.records import ALL_TIME, fetch_all

# A histogram's key: "<kind of model>:<code>", code = (will_load * 2 + outcome) * 100 + confidence (50-99); the kind
# is empty where none is known. Names, not positions, so that a change of core/failure_kinds.py's order changes
# nothing stored.
FORECAST_KEY = "COALESCE(kind, '') || ':' || ((will_load * 2 + outcome) * 100 + confidence)"


def histogram(forecasts_json: str) -> dict[tuple[str | None, Forecast], int]:
    """The stored histogram: (kind of model or None, forecast) -> how many scoring predictions."""
    return {_decode(key): n for key, n in json.loads(forecasts_json).items()}


@functools.cache
def _decode(key: str) -> tuple[str | None, Forecast]:
    kind, _, code = key.rpartition(":")
    answer_outcome, confidence = divmod(int(code), 100)
    return kind or None, Forecast(bool(answer_outcome >> 1), confidence, bool(answer_outcome & 1))


async def refresh_summaries(db: aiosqlite.Connection, guild_id: int, users: Collection[int] | None) -> None:
    """Recompute these members' summaries (the whole guild's when None), all time and per season: one ordered
    read of their settled predictions (the covering index), tallied here. (Window functions in SQL took several
    times longer for a round's members; migration 011 uses them once, and a test holds both to the same rows.)"""
    if users is not None and not users:
        return
    only = "" if users is None else " AND user_id IN (SELECT value FROM json_each(:users))"
    args = {"guild": guild_id, "users": json.dumps(sorted(users or ()))}
    await db.execute("DELETE FROM member_summaries WHERE guild_id = :guild" + only, args)
    rows = await fetch_all(db, f"SELECT user_id, season_id, points IS NULL, vs_canrun IS NOT NULL, will_load = outcome,"
                               f" {FORECAST_KEY} FROM predictions WHERE guild_id = :guild AND status = 'settled'{only}"
                               " ORDER BY user_id, settled_at, id", args)
    summaries = []
    for user_id, user_rows in itertools.groupby(rows, key=operator.itemgetter(0)):
        user_rows = list(user_rows)
        summaries.append((guild_id, ALL_TIME, user_id, *_summary(user_rows)))
        by_season = sorted((r for r in user_rows if r[1] is not None), key=operator.itemgetter(1))  # stable
        for season_id, season_rows in itertools.groupby(by_season, key=operator.itemgetter(1)):
            summaries.append((guild_id, season_id, user_id, *_summary(list(season_rows))))
    await db.executemany(
        "INSERT INTO member_summaries (guild_id, season_id, user_id, peeked, vs_canrun_count, current_streak,"
        " best_streak, forecasts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", summaries)


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps with options builds one per call


def _summary(rows: list[Any]) -> tuple[int, int, int, int, str]:
    """(peeked, vs_canrun_count, current_streak, best_streak, forecasts) of one member's settled predictions in
    one scope, given in settlement order as (user, season, peeked, vs_canrun, right, key) rows."""
    scoring = [r for r in rows if not r[2]]  # a peeked prediction never scores: no forecast, no streak
    current, best = streaks(r[4] for r in scoring)
    counts: dict[str, int] = {}
    for r in scoring:
        counts[r[5]] = counts.get(r[5], 0) + 1
    # Keys in order and compact, as SQLite's json_group_object writes them (migration 011)
    forecasts = _COMPACT_JSON.encode(dict(sorted(counts.items())))
    return len(rows) - len(scoring), sum(r[3] for r in rows), current, best, forecasts
