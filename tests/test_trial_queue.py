"""The persistent trial queue with the real worker: order, restarts, expiry, cancel, crashes."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.services import trial_queue
from bot.services.store import Store
from bot.services.trial_queue import QueueSettings, TrialAborted, TrialQueue, TrialRefused
from bot.services.trial_runner import TrialLimits
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import tiny_llama_files


@pytest.fixture(scope="module")
def tiny_hub():
    with FakeHub() as hub:
        files = tiny_llama_files()
        for name in ("tiny/a", "tiny/b", "tiny/c"):
            hub.add_repo(FakeRepo(name, dict(files)))
        yield hub


def settings(hub, tmp_path, **kw) -> QueueSettings:
    return QueueSettings(endpoint=hub.endpoint, cache_dir=tmp_path / "models", **kw)


def ask(queue, repo="tiny/a", user=1, max_tokens=4):
    return queue.enqueue(repo_id=repo, revision=None, requested_by=user, guild_id=10, channel_id=20,
                         prompt="hello", max_tokens=max_tokens, verdict="loads")


async def wait_finished(queue, trial_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trial = await queue.get(trial_id)
        if trial.finished:
            return trial
        await asyncio.sleep(0.05)
    raise AssertionError(f"trial {trial_id} did not finish")


async def test_two_moderators_racing_run_one_at_a_time(store, tiny_hub, tmp_path):
    queue = TrialQueue(store, settings(tiny_hub, tmp_path))
    seen = []

    async def listener(trial, progress):
        seen.append((trial.id, trial.status, progress.phase if progress else None))

    queue.listeners.append(listener)
    first, second = await asyncio.gather(ask(queue, "tiny/a", user=1), ask(queue, "tiny/b", user=2))
    assert await queue.position(second.id) == (1, pytest.approx(180.0))
    queue.start()
    a, b = await wait_finished(queue, first.id), await wait_finished(queue, second.id)
    await queue.stop()
    assert a.status == b.status == "succeeded" and a.loaded is True
    assert b.started_at >= a.finished_at  # never two at once
    assert a.result["generation_tokens"] > 0
    phases = [p for i, _, p in seen if i == first.id and p]
    assert phases.index("download") < phases.index("load") < phases.index("generate")
    assert (await queue.typical_duration()) < 180  # ETAs now come from real durations


async def test_limits_on_queue_length_per_user_and_duplicates(store, tiny_hub, tmp_path):
    queue = TrialQueue(store, settings(tiny_hub, tmp_path, queue_max=3, per_user_queued=2))
    await ask(queue, "tiny/a", user=1)
    with pytest.raises(TrialRefused, match="already queued"):
        await ask(queue, "tiny/a", user=2)
    await ask(queue, "tiny/b", user=1)
    with pytest.raises(TrialRefused, match="2 trials waiting"):
        await ask(queue, "tiny/c", user=1)
    await ask(queue, "tiny/c", user=2)
    with pytest.raises(TrialRefused, match="queue is full"):
        await ask(queue, "org/d", user=3)


async def test_restart_keeps_queued_expires_stale_and_fails_interrupted(tmp_path, tiny_hub):
    db = tmp_path / "db.sqlite3"
    store = await Store.open(db)
    await store.migrate()
    queue = TrialQueue(store, settings(tiny_hub, tmp_path))
    stale = await ask(queue, "tiny/a", user=1)
    fresh = await ask(queue, "tiny/b", user=2)
    running = await ask(queue, "tiny/c", user=3)
    async with store.transaction() as conn:
        await conn.execute("UPDATE trials SET created_at = created_at - 8 * 3600 WHERE id = ?", (stale.id,))
        await conn.execute("UPDATE trials SET status = 'running', started_at = ? WHERE id = ?", (time.time(), running.id))
    await store.close()  # the bot dies here

    store = await Store.open(db)
    queue = TrialQueue(store, settings(tiny_hub, tmp_path, queued_ttl_seconds=6 * 3600))
    assert await queue.recover() == (1, 1)
    assert (await queue.get(stale.id)).status == "expired"
    interrupted = await queue.get(running.id)
    assert interrupted.status == "failed" and interrupted.error == "interrupted by restart"
    queue.start()
    done = await wait_finished(queue, fresh.id)
    await queue.stop()
    await store.close()
    assert done.status == "succeeded"


async def test_cancel_queued_and_running(store, tiny_hub, tmp_path):
    queue = TrialQueue(store, settings(tiny_hub, tmp_path))
    long = await ask(queue, "tiny/a", user=1, max_tokens=100_000)
    waiting = await ask(queue, "tiny/b", user=2)
    assert (await queue.cancel(waiting.id, by_user=2)).status == "cancelled"
    queue.start()
    while (await queue.get(long.id)).phase != "generate":
        await asyncio.sleep(0.05)
    await queue.cancel(long.id, by_user=9)
    trial = await wait_finished(queue, long.id, timeout=10)
    await queue.stop()
    assert trial.status == "cancelled" and trial.cancelled_by == 9
    assert trial.loaded is True  # it got to generate: load() had worked


async def test_cancel_while_the_trial_is_being_set_up_starts_no_worker(store, tiny_hub, tmp_path):
    setting_up = asyncio.Event()

    async def slow_setup(trial):  # e.g. the hub fetch and the cache eviction before a download
        setting_up.set()
        await asyncio.sleep(0.5)

    queue = TrialQueue(store, settings(tiny_hub, tmp_path), before_run=slow_setup)
    trial = await ask(queue, "tiny/a", user=1)
    queue.start()
    await setting_up.wait()
    assert (await queue.get(trial.id)).status == "running"
    await queue.cancel(trial.id, by_user=7)
    ended = await wait_finished(queue, trial.id, timeout=10)
    await queue.stop()
    assert (ended.status, ended.cancelled_by, ended.phase, ended.loaded) == ("cancelled", 7, None, None)


async def test_a_failing_setup_step_fails_the_trial_and_the_queue_goes_on(store, tiny_hub, tmp_path):
    async def no_room(trial):
        if trial.repo_id == "tiny/a":
            raise TrialAborted("not enough disk for this model")

    queue = TrialQueue(store, settings(tiny_hub, tmp_path), before_run=no_room)
    refused = await ask(queue, "tiny/a", user=1)
    ok = await ask(queue, "tiny/b", user=2)
    queue.start()
    refused, ok = await wait_finished(queue, refused.id), await wait_finished(queue, ok.id)
    await queue.stop()
    assert (refused.status, refused.error) == ("failed", "not enough disk for this model")
    assert ok.status == "succeeded"


async def test_timeout_is_recorded(store, tiny_hub, tmp_path):
    limits = TrialLimits(download_seconds=60, load_seconds=60, generate_seconds=0.5)
    queue = TrialQueue(store, settings(tiny_hub, tmp_path, limits=limits))
    trial = await ask(queue, "tiny/a", max_tokens=100_000)
    queue.start()
    trial = await wait_finished(queue, trial.id)
    await queue.stop()
    assert (trial.status, trial.phase, trial.loaded) == ("timed_out", "generate", True)


async def test_the_queue_outlives_a_failure_outside_any_trial_and_goes_on_once_it_is_fixed(
        store, tiny_hub, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(trial_queue, "RETRY_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(trial_queue, "RETRY_MAX_SECONDS", 0.2)
    blocker = tmp_path / "disk"
    blocker.write_text("a file where the cache folder should be")  # the slot's folder cannot be made
    queue = TrialQueue(store, QueueSettings(endpoint=tiny_hub.endpoint, cache_dir=blocker / "models"))
    trial = await ask(queue, "tiny/a")
    queue.start()
    deadline = time.monotonic() + 30
    while "the trial queue failed" not in caplog.text:
        assert time.monotonic() < deadline, "the failure was never logged"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a few more tries
    assert not queue._task.done() and (await queue.get(trial.id)).status == "queued"
    blocker.unlink()  # the owner fixes it; the waiting trial runs without a restart
    trial = await wait_finished(queue, trial.id)
    await queue.stop()
    assert trial.status == "succeeded"



async def test_a_shutdown_while_a_trial_ends_keeps_its_record_and_its_settlement(store, tiny_hub, tmp_path):
    ending, settled = asyncio.Event(), []

    async def settle(trial):  # the game's settlement and the announcement take a moment
        ending.set()
        await asyncio.sleep(0.5)
        settled.append(trial.id)

    queue = TrialQueue(store, settings(tiny_hub, tmp_path), after_run=settle)
    trial = await ask(queue, "tiny/a")
    queue.start()
    await asyncio.wait_for(ending.wait(), 60)
    await queue.stop()  # the bot shuts down right then
    assert settled == [trial.id]
    assert (await queue.get(trial.id)).status == "succeeded"
