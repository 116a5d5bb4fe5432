"""A worker started ahead (SpareWorker): mlx-lm imported while no trial runs, the job given on stdin.

Each test starts real worker processes and downloads a tiny model from the fake hub, as the bot does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from bot.core.trial_outcome import CANCELLED, SUCCEEDED
from bot.services.trial_runner import SpareWorker, TrialLimits, TrialSpec, start_trial, worker_env
from tests.fakes.hub import FakeHub, FakeRepo
from tests.processes import alive
from tests.test_trial_runner import ENDLESS, LLAMA, Progress, spec


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        hub.add_repo(FakeRepo("tiny/llama", dict(LLAMA)))
        yield hub


async def test_a_trial_takes_the_spare_and_gives_what_a_cold_worker_gives(hub, tmp_path):
    trial = spec(hub, "tiny/llama", tmp_path)
    cold = await start_trial(trial, TrialLimits()).run(Progress())
    spare = SpareWorker()
    await spare.prepare(TrialSpec.template(hub.endpoint, tmp_path, None))
    spare_pid = spare._process.pid
    process = start_trial(trial, TrialLimits(), spare=spare)
    warm = await process.run(progress := Progress())
    assert (cold.status, warm.status) == (SUCCEEDED, SUCCEEDED)
    assert warm.result["warm_worker"] is True and cold.result["warm_worker"] is False
    assert warm.result["text"] == cold.result["text"]  # greedy: the same tokens either way
    assert process.pid == spare_pid and not alive(spare_pid)  # the spare ran it, and then ended like any worker
    assert process.first_token_seconds is not None and any(p.tokens == 1 for p in progress)  # first token at once
    assert spare.take(worker_env(trial)) is None  # taken once, never twice
    await spare.close()


async def test_a_spare_for_another_token_or_a_dead_one_is_not_used(hub, tmp_path):
    trial = spec(hub, "tiny/llama", tmp_path)
    spare = SpareWorker()
    await spare.prepare(TrialSpec.template(hub.endpoint, tmp_path, "hf_someone_else"))
    other_pid = spare._process.pid
    outcome = await start_trial(trial, TrialLimits(), spare=spare).run(Progress())
    assert outcome.status == SUCCEEDED and outcome.result["warm_worker"] is False
    assert not alive(other_pid)  # the mismatched spare was killed (and reaped) while the trial ran

    await spare.prepare(TrialSpec.template(hub.endpoint, tmp_path, None))
    spare._process.kill()
    await spare._process.wait()
    outcome = await start_trial(trial, TrialLimits(), spare=spare).run(Progress())
    assert outcome.status == SUCCEEDED and outcome.result["warm_worker"] is False  # started afresh instead
    await spare.close()


async def test_cancel_stops_a_warm_trial_and_its_process(hub, tmp_path):
    spare = SpareWorker()
    await spare.prepare(TrialSpec.template(hub.endpoint, tmp_path, None))
    process = start_trial(spec(hub, "tiny/llama", tmp_path, max_tokens=ENDLESS), TrialLimits(), spare=spare)
    progress = Progress()
    running = asyncio.create_task(process.run(progress))
    await progress.until(lambda p: p.phase == "generate" and p.tokens >= 1)
    process.cancel()
    outcome = await asyncio.wait_for(running, 30)
    assert outcome.status == CANCELLED and outcome.phase == "generate"
    assert not alive(process.pid)


def test_a_spare_never_given_a_job_exits_quietly(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "bot", "trial-worker", "--wait"], input=b"", capture_output=True,
                          env=env, timeout=120)
    assert done.returncode == 0 and done.stdout == b"{\"event\": \"ready\"}\n"  # ready, then no job: gone
