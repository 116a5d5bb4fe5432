"""Trial loads in a real worker process: tiny models are downloaded from the fake hub, loaded with the real
mlx-lm and run on the CPU. Every worker start imports mlx-lm (about a second), so each test starts as few
workers as it can and asserts everything one run can show."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import mlx_lm
import pytest
from tokenizers import Tokenizer

from bot.core.trial_outcome import TrialProgress
from bot.services.host import device_label
from bot.services.trial_runner import TrialLimits, TrialProcess, TrialSpec, start_trial
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import tiny_llama_files

LLAMA = tiny_llama_files()
REPO_CODE = {"modeling_tiny.py": b"raise SystemExit('canrun must never run repo code')\n"}
SLOW_WEIGHTS = "model-00001-of-00001.safetensors"  # the fake hub holds it back: downloads of tiny/slow never end
ENDLESS = 10**6  # tokens: the tiny model would generate for minutes


def with_config(files, **changes):
    return {**files, "config.json": json.dumps({**json.loads(files["config.json"]), **changes}).encode()}


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        hub.add_repo(FakeRepo("tiny/llama", {**LLAMA, **REPO_CODE}))
        hub.add_repo(FakeRepo("tiny/remote-code", {**with_config(LLAMA, model_file="modeling_tiny.py"), **REPO_CODE}))
        # mlx_lm.models.olmo prints to stdout and exits the process when `hf_olmo` is missing.
        hub.add_repo(FakeRepo("tiny/olmo", with_config(LLAMA, model_type="olmo")))
        slow = {name: data for name, data in LLAMA.items() if name != "model.safetensors"}
        hub.add_repo(FakeRepo("tiny/slow", {**slow, SLOW_WEIGHTS: LLAMA["model.safetensors"]}))
        hub.slow_paths[SLOW_WEIGHTS] = 60
        yield hub


def spec(hub: FakeHub, repo_id: str, cache_dir: Path, max_tokens: int = 8) -> TrialSpec:
    return TrialSpec(repo_id=repo_id, revision=None, prompt="hello", max_tokens=max_tokens, endpoint=hub.endpoint,
                     cache_dir=cache_dir)


class Progress(list):
    """A plain (not async) progress callback that records every report."""

    def __call__(self, report: TrialProgress) -> None:
        self.append(report)

    async def until(self, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(condition(report) for report in self):
            assert time.monotonic() < deadline, f"the trial never got there; reports: {list(self)}"
            await asyncio.sleep(0.02)


def assert_group_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


async def test_a_tiny_model_downloads_loads_and_generates(hub, tmp_path):
    reports: list[TrialProgress] = []

    async def record(report: TrialProgress) -> None:
        reports.append(report)

    outcome = await start_trial(spec(hub, "tiny/llama", tmp_path), TrialLimits()).run(record)

    assert outcome.status == "succeeded", outcome.error
    result = outcome.result
    assert result["ok"] is True
    assert 0 < result["generation_tokens"] <= 8 and result["generation_tps"] > 0
    assert isinstance(result["text"], str)
    assert result["load_seconds"] > 0 and result["peak_memory_bytes"] > 0
    assert result["mlx_lm_version"] == mlx_lm.__version__
    assert result["device"] == device_label()  # the name the bot's speed estimates look trials up by
    # The tokenizer has a chat template, so the prompt went through it, as `mlx_lm.generate` does.
    templated = Tokenizer.from_str(LLAMA["tokenizer.json"].decode()).encode("user: hello </s> assistant:",
                                                                              add_special_tokens=False)
    assert result["prompt_tokens"] == len(templated.ids)

    files_bytes = sum(len(data) for data in LLAMA.values())
    assert result["download_bytes"] == files_bytes
    phases = [r.phase for i, r in enumerate(reports) if i == 0 or r.phase != reports[i - 1].phase]
    assert phases == ["download", "load", "generate"]
    assert any(r.phase == "download" and r.bytes_done == r.bytes_total == files_bytes for r in reports)
    assert reports[-1].load_seconds == result["load_seconds"]

    # mlx-lm would download the repo's code too; canrun never does.
    assert not list(tmp_path.rglob("*.py")) and hub.count(path_contains=".py") == 0


async def test_a_model_that_does_not_load_fails_in_load_with_mlx_lms_message(hub, tmp_path, caplog):
    def broken_listener(report: TrialProgress) -> None:
        raise RuntimeError("discord is down")

    outcome = await start_trial(spec(hub, "tiny/remote-code", tmp_path), TrialLimits()).run(broken_listener)

    assert (outcome.status, outcome.phase, outcome.reported) == ("failed", "load", True)
    assert "custom module ('modeling_tiny.py')" in outcome.error and "trust_remote_code" in outcome.error
    assert outcome.result == {}
    assert "discord is down" in caplog.text  # logged, and the trial still went on to its end


async def test_a_model_module_that_prints_and_exits_fails_with_what_it_printed(hub, tmp_path, caplog):
    outcome = await start_trial(spec(hub, "tiny/olmo", tmp_path), TrialLimits()).run(Progress())

    assert (outcome.status, outcome.phase) == ("failed", "load")
    assert outcome.error == "mlx-lm exited with code 1: To run olmo install ai2-olmo: pip install ai2-olmo"
    assert "outside the protocol" not in caplog.text  # its print went to stderr, not into the protocol


async def test_an_unknown_repo_fails_while_downloading(hub, tmp_path):
    outcome = await start_trial(spec(hub, "tiny/no-such-model", tmp_path), TrialLimits()).run(Progress())

    assert (outcome.status, outcome.phase) == ("failed", "download")
    assert "Repository Not Found" in outcome.error


async def test_cancel_while_downloading_kills_the_worker_at_once(hub, tmp_path):
    progress = Progress()
    trial = start_trial(spec(hub, "tiny/slow", tmp_path), TrialLimits())
    running = asyncio.create_task(trial.run(progress))
    await progress.until(lambda r: r.phase == "download" and 0 < r.bytes_done < r.bytes_total)

    asked = time.monotonic()
    trial.cancel()
    outcome = await running

    assert time.monotonic() - asked < 3
    assert (outcome.status, outcome.phase, outcome.error) == ("cancelled", "download", None)
    assert_group_gone(trial.pid)


async def test_cancel_while_generating(hub, tmp_path):
    progress = Progress()
    trial = start_trial(spec(hub, "tiny/llama", tmp_path, max_tokens=ENDLESS), TrialLimits())
    running = asyncio.create_task(trial.run(progress))
    await progress.until(lambda r: r.tokens > 0)

    trial.cancel()
    outcome = await running

    assert (outcome.status, outcome.phase) == ("cancelled", "generate")
    assert outcome.result["load_seconds"] > 0  # what is known of a trial that did not finish
    assert_group_gone(trial.pid)


async def test_a_trial_cancelled_before_it_runs_starts_no_worker(tmp_path):
    trial = start_trial(TrialSpec("tiny/llama", None, "hello", 8, "http://127.0.0.1:9", tmp_path), TrialLimits())
    trial.cancel()

    outcome = await trial.run(Progress())

    assert outcome.status == "cancelled" and trial.pid is None


async def test_each_phase_has_its_own_time_limit(hub, tmp_path):
    # Starting the worker and importing mlx-lm alone takes longer than the generate limit.
    limits = TrialLimits(download_seconds=60, load_seconds=60, generate_seconds=0.5)
    trial = start_trial(spec(hub, "tiny/llama", tmp_path, max_tokens=ENDLESS), limits)

    outcome = await trial.run(Progress())

    assert (outcome.status, outcome.phase) == ("timed_out", "generate")
    assert outcome.error == "the generate phase took longer than its limit of 0.5 s"
    assert_group_gone(trial.pid)


async def test_the_output_check_runs_on_a_clock_of_its_own(hub, tmp_path):
    # A generous generate limit, none for the check after it: the generation's time left does not carry over.
    limits = TrialLimits(download_seconds=60, load_seconds=60, generate_seconds=600, check_seconds=0)
    trial = start_trial(spec(hub, "tiny/llama", tmp_path), limits)

    outcome = await trial.run(Progress())

    assert (outcome.status, outcome.phase) == ("timed_out", "generate")
    assert outcome.error == "the output check after the generation took longer than its limit of 0 s"
    assert_group_gone(trial.pid)


async def test_a_worker_killed_from_outside_fails_and_the_next_trial_runs(hub, tmp_path):
    progress = Progress()
    trial = start_trial(spec(hub, "tiny/slow", tmp_path), TrialLimits())
    running = asyncio.create_task(trial.run(progress))
    await progress.until(lambda r: r.bytes_done > 0)

    os.kill(trial.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    outcome = await running

    assert (outcome.status, outcome.phase, outcome.reported) == ("failed", "download", False)
    assert outcome.error.startswith("the trial worker was killed by SIGKILL — often the system running out of memory")
    assert_group_gone(trial.pid)

    after = await start_trial(spec(hub, "tiny/llama", tmp_path), TrialLimits()).run(Progress())
    assert after.status == "succeeded", after.error


# A bot that starts a trial through the real runner, says its worker's pid once the download is under way, and
# waits: the test kills it as the kernel or a crash would, with no chance to clean up.
BOT_KILLED_MID_TRIAL = """
import asyncio, sys
from pathlib import Path
from bot.services.trial_runner import TrialLimits, TrialSpec, start_trial

async def main():
    spec = TrialSpec(repo_id="tiny/slow", revision=None, prompt="hello", max_tokens=8, endpoint=sys.argv[1],
                     cache_dir=Path(sys.argv[2]))
    trial, told = start_trial(spec, TrialLimits()), []
    def progress(report):
        if report.bytes_done > 0 and not told:
            told.append(print(trial.pid, flush=True))
    await trial.run(progress)

asyncio.run(main())
"""


def worker_gone(pid: int) -> bool:
    """Gone, or dead and waiting to be reaped by whatever adopted it (not every container's init reaps)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


async def test_a_worker_whose_bot_is_killed_ends_itself(hub, tmp_path):
    bot = await asyncio.create_subprocess_exec(sys.executable, "-c", BOT_KILLED_MID_TRIAL, hub.endpoint,
                                               str(tmp_path), stdout=asyncio.subprocess.PIPE)
    try:
        worker = int(await asyncio.wait_for(bot.stdout.readline(), 60))
    finally:
        bot.kill()
        await bot.wait()
    # The download is held back for a minute: only the worker's own watch on its parent ends it this soon.
    deadline = time.monotonic() + 15
    try:
        while not worker_gone(worker):
            assert time.monotonic() < deadline, "the worker outlived its bot"
            await asyncio.sleep(0.1)
    finally:
        if not worker_gone(worker):
            os.killpg(worker, signal.SIGKILL)


# A worker that has answered and is still on its way out when the cancel comes (its last progress line is the
# moderator's cue to press Cancel).
ANSWERS_THEN_LINGERS = """
import json, time
for event in ({"event": "phase", "phase": "generate"}, {"event": "generated", "tokens": 4},
              {"event": "result", "ok": True, "generation_tokens": 4, "generation_tps": 9.0},
              {"event": "generate", "tokens": 4}):
    print(json.dumps(event), flush=True)
time.sleep(3)
"""


async def test_a_cancel_after_the_worker_answered_keeps_its_result():
    trial = TrialProcess([sys.executable, "-c", ANSWERS_THEN_LINGERS], dict(os.environ), TrialLimits())

    def press_cancel(report: TrialProgress) -> None:
        if report.tokens:
            trial.cancel()

    outcome = await trial.run(press_cancel)
    assert (outcome.status, outcome.result["generation_tps"]) == ("succeeded", 9.0)


async def test_a_download_over_the_limit_or_the_free_disk_fetches_nothing(hub, tmp_path):
    size = sum(len(v) for v in LLAMA.values())  # every file of tiny/llama the worker fetches, and a little more
    served = hub.served("tiny/llama", "model.safetensors")
    over = await start_trial(spec(hub, "tiny/llama", tmp_path), TrialLimits(max_download_bytes=size // 2)).run(Progress())
    assert (over.status, over.phase) == ("failed", "download") and "over this machine's limit" in over.error
    full = await start_trial(spec(hub, "tiny/llama", tmp_path),
                             TrialLimits(max_download_bytes=10 * size, min_free_disk_bytes=2**62)).run(Progress())
    assert (full.status, full.phase) == ("failed", "download") and "min_free_disk_gb" in full.error
    assert hub.served("tiny/llama", "model.safetensors") == served  # refused before the first byte
    ok = await start_trial(spec(hub, "tiny/llama", tmp_path), TrialLimits(max_download_bytes=10 * size)).run(Progress())
    assert ok.status == "succeeded", ok.error
