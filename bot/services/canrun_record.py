"""canrun's record against the bot's stored trials (bot/core/canrun_record.py), and the owner's log line for
each trial that shows a verdict wrong.

Each trial keeps the verdict it was queued with and the mlx-lm that gave it (migration 007); a trial from
before that kept only the verdict's word, and counts under the mlx-lm that ran it, when it got that far.
A `canrun trial` in a terminal is kept only for the speed estimates (terminal_trials), so only the bot's
trials count.
"""

from __future__ import annotations

import logging

from bot.core.canrun_record import LATEST_MISSES, UNKNOWN_VERSION, CanrunRecord, JudgedTrial, miss_report, record
from bot.services.store import Store
from bot.services.trial_queue import Trial

log = logging.getLogger(__name__)


async def judged_trials(store: Store) -> list[JudgedTrial]:
    """Every stored trial that told whether load() succeeds and has the verdict it was queued with."""
    async with store.conn.execute(
        "SELECT id, repo_id, revision, verdict, loaded, finished_at, error, looks_broken,"
        " COALESCE(verdict_mlx_lm_version, json_extract(result, '$.mlx_lm_version')) AS version"
        " FROM trials WHERE loaded IS NOT NULL AND verdict IS NOT NULL ORDER BY id"
    ) as cur:
        rows = await cur.fetchall()
    return [JudgedTrial(trial_id=r["id"], repo_id=r["repo_id"], revision=r["revision"], verdict=r["verdict"],
                        loaded=bool(r["loaded"]), mlx_lm_version=r["version"] or UNKNOWN_VERSION,
                        finished_at=r["finished_at"] or 0.0, error=r["error"],
                        looks_broken=None if r["looks_broken"] is None else bool(r["looks_broken"]))
            for r in rows]


async def canrun_record(store: Store, latest_misses: int = LATEST_MISSES) -> CanrunRecord:
    return record(await judged_trials(store), latest_misses)


def judged(trial: Trial) -> JudgedTrial | None:
    """A finished trial as the record sees it; None when it did not judge load() or has no verdict."""
    if trial.loaded is None or trial.verdict is None:
        return None
    version = trial.verdict_mlx_lm_version or (trial.result or {}).get("mlx_lm_version") or UNKNOWN_VERSION
    return JudgedTrial(trial_id=trial.id, repo_id=trial.repo_id, revision=trial.revision, verdict=trial.verdict,
                       loaded=trial.loaded, mlx_lm_version=version, finished_at=trial.finished_at or 0.0,
                       error=trial.error, looks_broken=trial.looks_broken)


def log_if_missed(trial: Trial) -> bool:
    """A trial whose outcome contradicts canrun's verdict is a bug report: one WARNING line for the owner.
    Returns whether it was one."""
    seen = judged(trial)
    line = miss_report(seen) if seen is not None else None
    if line is not None:
        log.warning("%s", line)
    return line is not None
