"""The leaderboard and a member's stats, read from the standings table and the predictions."""

from __future__ import annotations

import collections
import functools

from bot.core.failure_kinds import KINDS, accuracy_by_kind
from bot.core.scoring import Forecast, accuracy_of, calibration_of, mean_brier_of, streaks
from bot.services.predictions.records import (
    ALL_TIME, CanrunStanding, LeaderboardPage, LeaderboardRow, MemberStats, fetch_all, fetch_one,
)
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
    in_season, args = ("", (guild_id, user_id))
    if season_id is not None:
        in_season, args = " AND season_id = ?", (guild_id, user_id, season_id)
    # One pass over the member's settled predictions (the covering index, in settlement order). A busy member has
    # thousands of them but only 200 distinct (answer, confidence, outcome), times 8 kinds of model (none
    # included): each scoring one comes back as one character of a single string, so the read, the counts and the
    # streaks run at C speed instead of building a row per prediction. SQLite keeps an ORDER BY subquery's order
    # for an aggregate above it (it never flattens such a subquery into an aggregate query), so the string is in
    # settlement order; a property test holds it to that.
    totals = await fetch_one(
        store.conn,
        "SELECT ROUND(TOTAL(points), 2), ROUND(TOTAL(relative_points), 3), COUNT(*) - COUNT(points),"
        " ROUND(TOTAL(vs_canrun), 2), COUNT(vs_canrun), group_concat(code, '') FROM"
        f" (SELECT points, relative_points, vs_canrun, CASE WHEN points IS NULL THEN '' ELSE char({_CODE_BASE} +"
        f" {_KIND_CODE} * 400 + (will_load * 2 + outcome) * 100 + confidence) END AS code FROM predictions"
        f" WHERE guild_id = ? AND user_id = ? AND status = 'settled'{in_season} ORDER BY settled_at, id)", args)
    codes = totals[5] or ""
    counts: collections.Counter[Forecast] = collections.Counter()
    per_kind: dict[str, list[int]] = {}
    for char, n in collections.Counter(codes).items():
        kind, forecast = divmod(ord(char) - _CODE_BASE, 400)
        counts[_decode(forecast)] += n
        if kind:
            tally = per_kind.setdefault(KINDS[kind - 1], [0, 0])
            tally[0] += n
            tally[1] += n * _CORRECT[forecast]
    current, best = streaks(codes.translate(_CORRECT_FLAGS).encode())
    pending = await fetch_one(store.conn, "SELECT COUNT(*) FROM predictions WHERE guild_id = ? AND user_id = ?"
                                          " AND status IN ('open', 'locked')", (guild_id, user_id))
    return MemberStats(
        user_id, season_id, len(codes), sum(n for f, n in counts.items() if f.correct), accuracy_of(counts),
        mean_brier_of(counts), totals[0], totals[1], calibration_of(counts), current, best, totals[2], pending[0],
        await _rank(store, guild_id, user_id, season_id, min_settled), totals[3], totals[4],
        accuracy_by_kind({kind: (n, correct) for kind, (n, correct) in per_kind.items()}))


def _decode(code: int) -> Forecast:
    kind, confidence = divmod(code, 100)
    return _forecast(kind >> 1, confidence, kind & 1)


# code -> whether the prediction was right ((will_load, outcome) code 0 or 3, i.e. will_load == outcome), whatever
# the kind of model (code // 400)
_CORRECT = tuple(code % 400 // 100 in (0, 3) for code in range(400 * (len(KINDS) + 1)))
# code + _CODE_BASE -> "\x01" where the prediction was right, else "\x00" (str.translate)
_CODE_BASE = 256  # past the control characters, so no code's character is one SQLite or Python treats specially
_CORRECT_FLAGS = {_CODE_BASE + code: "\x01" if right else "\x00" for code, right in enumerate(_CORRECT)}
# the kind of model as 1..7 (0: none known), in SQL
_KIND_CODE = "CASE kind " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS, start=1)) + " ELSE 0 END"


@functools.cache
def _forecast(will_load: int, confidence: int, outcome: int) -> Forecast:
    """Shared instances: there are 200 distinct forecasts, and a busy member has thousands of rows."""
    return Forecast(bool(will_load), confidence, bool(outcome))


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
