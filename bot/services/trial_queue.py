"""The trial queue: persisted in SQLite, one trial at a time per host (the host's trial slot, shared with
`canrun trial`: while one runs in a terminal, queued trials wait).

Durable by design: a queued trial survives a restart (unless it waited longer than the TTL, then it
expires instead of surprising people hours later), and a trial that was running when the bot died is
marked failed, "interrupted by restart". The Discord layer listens for updates; nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

from bot.core.errors import CanrunUserError
from bot.core.repo_id import DEFAULT_BRANCH, HUB_URL, is_default_branch
from bot.core.trial_policy import loaded_from
from bot.core.verdicts import Verdict
from bot.services.store import Store
from bot.core.trial_outcome import TrialOutcome, TrialProgress
from bot.services.trial_runner import SpareWorker, TrialLimits, TrialSpec, start_trial
from bot.services.trial_slot import trial_slot

log = logging.getLogger(__name__)
DEFAULT_ETA_SECONDS = 180.0  # before any trial has finished, a guess for one trial's length
FINISHED = ("succeeded", "failed", "cancelled", "timed_out", "expired")
CRASHED = "canrun itself failed running this trial"
# After a failure outside any one trial (the slot's folder, the database), the loop waits this long, doubling up
# to the most, and tries again: a broken disk is not retried in a tight loop, a fixed one is found within a minute.
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 1.0, 60.0
STOP_GRACE_SECONDS = 30.0  # how long a shutdown waits for a finished trial's record, settlement and message


class TrialRefused(CanrunUserError):
    """The queue will not take this trial; the message is for the user."""


class TrialAborted(Exception):
    """Raised by a before_run step: the trial fails with this message (e.g. no room on disk)."""


@dataclass
class Trial:
    id: int
    repo_id: str
    revision: str | None
    requested_by: int
    guild_id: int | None
    channel_id: int | None
    prompt: str
    max_tokens: int
    status: str
    created_at: float
    phase: str | None = None
    loaded: bool | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    message_id: int | None = None
    cancelled_by: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # The output check of a trial that generated (bot/core/output_check.py); its details stay in `result`.
    perplexity: float | None = None
    printable_share: float | None = None
    looks_broken: bool | None = None
    # What the verdict it was queued with rested on (canrun's record: bot/core/canrun_record.py).
    verdict_mlx_lm_version: str | None = None
    verdict_checked_by: str | None = None
    verdict_sha: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_row(cls, row: Any) -> Trial:
        data = dict(row)
        data["result"] = json.loads(data["result"]) if data.get("result") else {}
        for flag in ("loaded", "looks_broken"):
            data[flag] = None if data.get(flag) is None else bool(data[flag])
        return cls(**data)


@dataclass(frozen=True)
class QueueSettings:
    queue_max: int = 10
    per_user_queued: int = 2
    queued_ttl_seconds: float = 6 * 3600
    limits: TrialLimits = TrialLimits()
    endpoint: str = HUB_URL
    hf_token: str | None = None
    cache_dir: Path = Path(".canrun/models")
    # Keep a worker started ahead while no trial runs (trial_runner.SpareWorker); the bot sets it from
    # [trials] warm_worker (on by default there).
    warm_worker: bool = False


async def first_judged_at(store: Store, repo_id: str) -> float | None:
    """When a trial (of any revision) first showed whether this repo loads; None if none has yet. Trial results are
    posted in public, so for the prediction game everyone has seen them from then on."""
    async with store.conn.execute(
        "SELECT MIN(finished_at) FROM trials WHERE repo_id = ? AND loaded IS NOT NULL", (repo_id,)) as cur:
        row = await cur.fetchone()
    return row[0]


async def latest_judged(store: Store, repo_id: str, *, since: float = 0.0) -> Trial | None:
    """The latest trial of this repo's default branch that finished after `since` and told whether load()
    succeeds."""
    async with store.conn.execute(
        "SELECT * FROM trials WHERE repo_id = ? AND COALESCE(revision, ?) = ? AND loaded IS NOT NULL"
        " AND finished_at >= ? ORDER BY finished_at DESC LIMIT 1",
        (repo_id, DEFAULT_BRANCH, DEFAULT_BRANCH, since)) as cur:  # is_default_branch(revision), in SQL
        row = await cur.fetchone()
    return Trial.from_row(row) if row else None


Listener = Callable[[Trial, TrialProgress | None], Awaitable[None]]


class TrialQueue:
    def __init__(self, store: Store, settings: QueueSettings, *,
                 before_run: Callable[[Trial], Awaitable[None]] | None = None,
                 after_run: Callable[[Trial], Awaitable[None]] | None = None):
        self.store = store
        self.settings = settings
        self.before_run = before_run  # e.g. lock predictions, make room on disk
        self.after_run = after_run  # e.g. settle predictions, evict the model
        self.listeners: list[Listener] = []
        self._wakeup = asyncio.Event()
        self._current: tuple[int, Any] | None = None  # (trial id, its TrialProcess)
        self._cancel_requested: dict[int, int] = {}
        self._task: asyncio.Task | None = None
        self._claimed: Trial | None = None  # the trial the loop is running, for _fail_claimed
        self._ending: asyncio.Future[None] | None = None  # the record of a trial's end, which stop() waits for
        self._finish_waiters: dict[int, list[asyncio.Future[Trial]]] = {}
        self.recovered: list[int] = []  # trials recover() ended
        self.spare = SpareWorker() if settings.warm_worker else None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """At start: running trials died with the old process; stale queued ones expire. Returns the counts."""
        now = time.time()
        async with self.store.transaction() as db:
            async with db.execute(
                "UPDATE trials SET status = 'failed', error = 'interrupted by restart', finished_at = ?"
                " WHERE status = 'running' RETURNING id", (now,)) as cur:
                interrupted = [row[0] for row in await cur.fetchall()]
            async with db.execute(
                "UPDATE trials SET status = 'expired', error = 'waited longer than the queue allows', finished_at = ?"
                " WHERE status = 'queued' AND created_at < ? RETURNING id",
                (now, now - self.settings.queued_ttl_seconds)) as cur:
                expired = [row[0] for row in await cur.fetchall()]
        self.recovered = sorted(interrupted + expired)  # their messages need a last update
        interrupted, expired = len(interrupted), len(expired)
        if interrupted or expired:
            log.info("trial queue recovered: %d interrupted, %d expired", interrupted, expired)
        return interrupted, expired

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="trial-queue")

    async def stop(self) -> None:
        if self._current is not None:
            self._current[1].cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._ending is not None and not self._ending.done():
            try:  # a trial's end being recorded and settled: let it finish (the store closes after this)
                await asyncio.wait_for(asyncio.shield(self._ending), STOP_GRACE_SECONDS)
            except TimeoutError:
                log.warning("stopped before the end of the last trial was fully recorded")
            except Exception:  # noqa: BLE001 - already logged where it failed
                pass
        if self.spare is not None:
            await self.spare.close()

    # ---- queries -------------------------------------------------------------------------------

    async def get(self, trial_id: int) -> Trial | None:
        """The trial as of the latest commit: callers read back what the queue has just written (enqueue, claim,
        finish) or must not miss an end that was just recorded (wait_finished)."""
        async with self.store.conn.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)) as cur:
            row = await cur.fetchone()
        return Trial.from_row(row) if row else None

    async def waiting(self) -> list[Trial]:
        async with self.store.conn.execute(
            "SELECT * FROM trials WHERE status IN ('queued', 'running') ORDER BY (status = 'running') DESC, id"
        ) as cur:
            return [Trial.from_row(r) for r in await cur.fetchall()]

    async def recent(self, limit: int = 10, repo_id: str | None = None) -> list[Trial]:
        sql = "SELECT * FROM trials WHERE status NOT IN ('queued', 'running')"
        args: tuple = ()
        if repo_id is not None:
            sql += " AND repo_id = ?"
            args = (repo_id,)
        async with self.store.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)) as cur:
            return [Trial.from_row(r) for r in await cur.fetchall()]

    async def position(self, trial_id: int) -> tuple[int, float]:
        """(trials ahead of this one, estimated seconds until it starts)."""
        ahead = [t for t in await self.waiting() if t.id < trial_id or t.status == "running"]
        ahead = [t for t in ahead if t.id != trial_id]
        per_trial = await self.typical_duration()
        eta = 0.0
        for t in ahead:
            eta += max(0.0, per_trial - (time.time() - t.started_at)) if t.status == "running" and t.started_at else per_trial
        return len(ahead), eta

    async def in_flight(self, repo_id: str) -> Trial | None:
        """The queued or running trial of this repo's default branch, if there is one."""
        return next((t for t in await self.waiting() if t.repo_id == repo_id and is_default_branch(t.revision)), None)

    async def latest_judged(self, repo_id: str, *, since: float = 0.0) -> Trial | None:
        """The latest trial of this repo's default branch that finished after `since` and told whether load()
        succeeds."""
        return await latest_judged(self.store, repo_id, since=since)

    async def wait_finished(self, trial_id: int) -> Trial:
        """Until the trial has ended, however it ends; returns it as it ended."""
        waiter: asyncio.Future[Trial] = asyncio.get_running_loop().create_future()
        self._finish_waiters.setdefault(trial_id, []).append(waiter)
        try:
            trial = await self.get(trial_id)  # registered first, so an end between the two is not missed
            if trial is None:
                raise KeyError(trial_id)
            if trial.finished:
                return trial
            return await waiter
        finally:
            waiters = self._finish_waiters.get(trial_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._finish_waiters.pop(trial_id, None)

    async def typical_duration(self) -> float:
        """Median length of the last 20 trials that ran to an end."""
        async with self.store.conn.execute(
            "SELECT finished_at - started_at FROM trials WHERE status IN ('succeeded', 'failed')"
            " AND started_at IS NOT NULL ORDER BY id DESC LIMIT 20"
        ) as cur:
            values = sorted(r[0] for r in await cur.fetchall() if r[0] is not None)
        return values[len(values) // 2] if values else DEFAULT_ETA_SECONDS

    # ---- changes -------------------------------------------------------------------------------

    async def enqueue(self, *, repo_id: str, revision: str | None, requested_by: int, guild_id: int | None,
                      channel_id: int | None, prompt: str, max_tokens: int, verdict: Verdict | str | None,
                      per_user_limit: bool = True) -> Trial:
        """Queue a trial. `per_user_limit=False` for the bot's own trials (a round's reveal queues one per repo).
        `verdict`: canrun's answer when it was queued, kept for its record (a bare verdict word keeps only that)."""
        given = verdict if isinstance(verdict, Verdict) else None
        word = given.verdict if given is not None else verdict
        async with self.store.transaction() as db:
            async with db.execute("SELECT requested_by, repo_id, revision, id FROM trials WHERE status = 'queued'") as cur:
                queued = await cur.fetchall()
            if len(queued) >= self.settings.queue_max:
                raise TrialRefused(f"The queue is full ({self.settings.queue_max} trials waiting). Try again later.")
            same = [r for r in queued if r[1] == repo_id and r[2] == revision]
            if same:
                raise TrialRefused(f"`{repo_id}` is already queued as trial #{same[0][3]}.")
            if per_user_limit and sum(1 for r in queued if r[0] == requested_by) >= self.settings.per_user_queued:
                raise TrialRefused(f"You already have {self.settings.per_user_queued} trials waiting.")
            cur = await db.execute(
                "INSERT INTO trials (repo_id, revision, guild_id, channel_id, requested_by, prompt, max_tokens,"
                " status, verdict, verdict_mlx_lm_version, verdict_checked_by, verdict_sha, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                (repo_id, revision, guild_id, channel_id, requested_by, prompt, max_tokens, word,
                 given and given.mlx_lm_version, given and given.checked_by, given and given.sha, time.time()),
            )
            trial_id = cur.lastrowid
        trial = await self.get(trial_id)
        assert trial is not None
        # Wake the worker only now: the caller registers its progress message before the loop can run.
        self._wakeup.set()
        return trial

    async def cancel(self, trial_id: int, by_user: int) -> Trial | None:
        """Cancel a queued or running trial. Returns the trial, or None if there is no such trial."""
        trial = await self.get(trial_id)
        if trial is None or trial.finished:
            return trial
        async with self.store.transaction() as db:
            cur = await db.execute(
                "UPDATE trials SET status = 'cancelled', cancelled_by = ?, finished_at = ? WHERE id = ? AND status = 'queued'",
                (by_user, time.time(), trial_id))
            was_queued = cur.rowcount == 1
        if not was_queued:
            # Running, or claimed a moment ago and still in its before_run step: the run loop sees the request
            # before it starts the worker, or kills the worker now; either way it records the end.
            self._cancel_requested[trial_id] = by_user
            if self._current is not None and self._current[0] == trial_id:
                self._current[1].cancel()
            trial = await self.get(trial_id)
            if trial is not None and trial.finished:  # it ended meanwhile: no run will take the request
                self._cancel_requested.pop(trial_id, None)
            return trial
        trial = await self.get(trial_id)
        await self._notify(trial, None)
        return trial

    async def set_message(self, trial_id: int, message_id: int) -> None:
        async with self.store.transaction() as db:
            await db.execute("UPDATE trials SET message_id = ? WHERE id = ?", (message_id, trial_id))

    # ---- the worker loop -----------------------------------------------------------------------

    async def _run_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._serve_next()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the queue must outlive a failure outside any one trial's run
                # The slot's folder, the database: the owner may fix it while the bot runs, and queued trials
                # then go on. A trial claimed before the failure must not stay 'running' until a restart.
                failures += 1
                delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
                log.exception("the trial queue failed; it tries again in %g s", delay)
                await self._fail_claimed()
                await asyncio.sleep(delay)

    async def _serve_next(self) -> None:
        """Wait for a queued trial and run it; returns when there was none to claim after all."""
        await self._prepare_spare()  # no trial runs now: the next one finds mlx-lm imported
        self._wakeup.clear()  # before looking: an enqueue from now on wakes the wait below
        if not await self._anything_queued():
            await self._wakeup.wait()
            return
        # The slot first, then the claim: a trial waiting for the host stays queued, and says so.
        async with trial_slot(self.settings.cache_dir, "the Discord bot's trial queue",
                              on_wait=self._waiting_for_host) as slot:
            trial = await self._claim_next()
            if trial is None:
                return
            self._claimed = trial
            slot.describe(f"the Discord bot's trial #{trial.id} of {trial.repo_id}")
            await self._run_guarded(trial)
            self._claimed = None

    async def _fail_claimed(self) -> None:
        """After a failure of the loop: the trial it had claimed ends as failed, if it has not ended."""
        trial, self._claimed = self._claimed, None
        if trial is None:
            return
        try:
            current = await self.get(trial.id)
            if current is not None and not current.finished:
                await self._finish(trial.id, "failed", current.phase, CRASHED, {}, None)
        except Exception:  # noqa: BLE001 - the database may be what failed; a restart marks it then
            log.exception("could not record the end of trial #%s", trial.id)

    async def _prepare_spare(self) -> None:
        if self.spare is not None:
            await self.spare.prepare(
                TrialSpec.template(self.settings.endpoint, self.settings.cache_dir, self.settings.hf_token))

    def _waiting_for_host(self, holder: str) -> None:
        log.info("trials wait: another trial runs on this host (%s)", holder)

    async def _anything_queued(self) -> bool:
        async with self.store.conn.execute("SELECT 1 FROM trials WHERE status = 'queued' LIMIT 1") as cur:
            return await cur.fetchone() is not None

    async def _run_guarded(self, trial: Trial) -> None:
        try:
            await self._run(trial)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one broken trial must not stop the queue
            log.exception("trial #%s crashed the queue's run", trial.id)
            await self._finish(trial.id, "failed", trial.phase, CRASHED, {}, None)

    async def _claim_next(self) -> Trial | None:
        async with self.store.transaction() as db:
            async with db.execute("SELECT id FROM trials WHERE status = 'queued' ORDER BY id LIMIT 1") as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            await db.execute("UPDATE trials SET status = 'running', started_at = ? WHERE id = ?", (time.time(), row[0]))
        return await self.get(row[0])

    async def _run(self, trial: Trial) -> None:
        if self.before_run is not None:
            try:
                await self.before_run(trial)
            except TrialAborted as e:
                await self._finish(trial.id, "failed", None, str(e), {}, None)
                return
        await self._notify(trial, None)
        spec = TrialSpec(repo_id=trial.repo_id, revision=trial.revision, prompt=trial.prompt,
                         max_tokens=trial.max_tokens, endpoint=self.settings.endpoint,
                         cache_dir=self.settings.cache_dir, hf_token=self.settings.hf_token)
        process = start_trial(spec, self.settings.limits, spare=self.spare)
        self._current = (trial.id, process)
        if trial.id in self._cancel_requested:  # cancelled while it was being set up: no worker starts
            process.cancel()
        reached_generate = False

        async def progress(p: TrialProgress) -> None:
            nonlocal reached_generate
            reached_generate = reached_generate or p.phase == "generate"
            if p.phase != trial.phase:  # persisted, so /trials and a restart know how far it got
                trial.phase = p.phase
                async with self.store.transaction() as db:
                    await db.execute("UPDATE trials SET phase = ? WHERE id = ?", (p.phase, trial.id))
            await self._notify(trial, p)

        try:
            outcome: TrialOutcome = await process.run(progress)
        finally:
            self._current = None
        loaded = loaded_from(outcome.status, outcome.phase, reached_generate, outcome.reported)
        # A cancel that came after the end is no part of it.
        asked = self._cancel_requested.pop(trial.id, None)
        # Shielded: a shutdown now must not roll back the record of a trial that ran to its end, nor skip its
        # settlement; stop() waits for it.
        self._ending = asyncio.ensure_future(self._finish(
            trial.id, outcome.status, outcome.phase, outcome.error, outcome.result, loaded,
            cancelled_by=asked if outcome.status == "cancelled" else None))
        await asyncio.shield(self._ending)

    async def _finish(self, trial_id: int, status: str, phase: str | None, error: str | None,
                      result: dict[str, Any], loaded: bool | None, cancelled_by: int | None = None) -> None:
        broken = result.get("looks_broken")
        async with self.store.transaction() as db:
            await db.execute(
                "UPDATE trials SET status = ?, phase = ?, error = ?, result = ?, loaded = ?, cancelled_by = ?,"
                " finished_at = ?, perplexity = ?, printable_share = ?, looks_broken = ? WHERE id = ?",
                (status, phase, error, json.dumps(result), None if loaded is None else int(loaded), cancelled_by,
                 time.time(), result.get("perplexity"), result.get("printable_share"),
                 None if broken is None else int(broken), trial_id))
        self._cancel_requested.pop(trial_id, None)
        trial = await self.get(trial_id)
        if self.after_run is not None:
            try:
                await self.after_run(trial)
            except Exception:  # noqa: BLE001
                log.exception("after-trial step failed for #%s", trial_id)
        await self._notify(trial, None)

    async def _notify(self, trial: Trial, progress: TrialProgress | None) -> None:
        if trial.finished:
            for waiter in self._finish_waiters.get(trial.id, []):
                if not waiter.done():
                    waiter.set_result(trial)
        for listener in list(self.listeners):
            try:
                await listener(trial, progress)
            except Exception:  # noqa: BLE001 - a failing listener (e.g. Discord down) must not stop a trial
                log.exception("trial listener failed for #%s", trial.id)
