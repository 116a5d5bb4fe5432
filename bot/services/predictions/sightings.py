"""Who could have seen a repo's answer, and when: a prediction made after that is a peek and never scores."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Sequence

from bot.services.predictions.records import fetch_one
from bot.services.store import Store


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
        row = await fetch_one(store.conn, f"SELECT MIN({s.time_column}) FROM {s.table}"
                                          f" WHERE {s.user_column} = ? AND {s.repo_column} = ?", (user_id, repo_id))
        times.append(row[0])
    if also_seen is not None:
        times.append(await also_seen(user_id, repo_id))
    return min((t for t in times if t is not None), default=None)


async def shown_in_guild_at(store: Store, guild_id: int, repo_id: str) -> float | None:
    """When this repo's answer was first posted in public in this guild: a /canrun there (any member's) or a
    revealed round. Everyone in the guild could have seen it from then on."""
    verdicts = await fetch_one(store.conn, "SELECT MIN(created_at) FROM verdict_history WHERE repo_id = ?"
                                           " AND guild_id = ? AND verdict NOT IN ('gated', 'not_found')",
                               (repo_id, guild_id))
    rounds = await fetch_one(store.conn, "SELECT MIN(r.revealed_at) FROM rounds r"
                                         " JOIN round_repos rr ON rr.round_id = r.id"
                                         " WHERE r.guild_id = ? AND rr.repo_id = ? AND r.revealed_at IS NOT NULL"
                                         " AND rr.void_reason IS NULL", (guild_id, repo_id))
    return min((t for t in (verdicts[0], rounds[0]) if t is not None), default=None)
