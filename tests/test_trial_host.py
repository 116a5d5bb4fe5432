"""Trials and the host they run on: one at a time per host (bot and `canrun trial` alike), the worker's environment,
and a kept model that is not downloaded again. Real processes, real locks, tiny models from the fake hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli import main
from bot.services.trial_queue import QueueSettings, TrialQueue
from bot.core.trial_outcome import SUCCEEDED
from bot.services.trial_runner import PROJECT_ROOT, TrialLimits, TrialSpec, start_trial
from bot.services.trial_slot import trial_slot
from tests.conftest import seed_store
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import tiny_llama_files
from tests.test_trial_cli import _Lines

LLAMA = tiny_llama_files()


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        for name in ("tiny/llama", "tiny/slow", "tiny/kept"):
            hub.add_repo(FakeRepo(name, dict(LLAMA)))
        yield hub


@pytest.fixture
def config(tmp_path, hub, capability_table, monkeypatch):
    """A config shared by every process of a test: one store, one model cache (hence one trial slot)."""
    db = tmp_path / "canrun.sqlite3"
    asyncio.run(seed_store(db, capability_table))
    path = tmp_path / "config.toml"
    path.write_text(f'[hub]\nendpoint = "{hub.endpoint}"\nmax_retries = 1\n[store]\npath = "{db}"\n'
                    f'[memory]\nbudget_gb = 16.0\n[trials]\nmin_free_disk_gb = 0.0\n'
                    f'cache_dir = "{tmp_path / "models"}"\n')
    monkeypatch.setenv("CANRUN_CONFIG", str(path))
    return path


def _trial_process(config: Path, repo: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", "trial", repo, "--config", str(config)], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _workers(repo: str, *parents: subprocess.Popen) -> list[int]:
    """Trial workers of `repo` that `parents` started, found as a user would, with ps. Only theirs: another test
    run on this host may have workers of the same repo."""
    listing = subprocess.run(["ps", "-ww", "-Ao", "pid=,ppid=,args="], capture_output=True, text=True,
                             check=True).stdout
    ours = {proc.pid for proc in parents}
    return [int(pid) for pid, ppid, args in (line.split(None, 2) for line in listing.splitlines() if line.strip())
            if int(ppid) in ours and "trial-worker" in args and f"--repo={repo}" in args]


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- 10: one trial at a time per host ----------------------------------------------------------------


def test_a_second_canrun_trial_waits_for_the_first(config, hub, capsys):
    assert main(["check", "tiny/slow", "tiny/llama"]) == 0  # verdicts cached: only the trial's download is slow
    hub.slow_paths["tiny/slow/resolve/"] = 60  # the first trial's download hangs until it is cancelled
    first = _trial_process(config, "tiny/slow")
    second = None
    try:
        first_err = _Lines(first.stderr)
        first_err.wait_for("canrun: downloading…")
        second = _trial_process(config, "tiny/llama")
        second_err = _Lines(second.stderr)
        second_err.wait_for("waiting for it to end")

        # The first holds the slot, so the second has started no worker: it waits, and says for whom.
        assert _workers("tiny/llama", second) == []
        assert f"another trial is running on this machine (canrun trial tiny/slow (pid {first.pid}))" in \
            "".join(second_err._lines).replace("this Mac", "this machine")

        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=30) == 130
        assert second.wait(timeout=120) == 0, second_err.text()
        text = second_err.text()
        assert text.index("waiting for it to end") < text.index("canrun: downloading…")
        assert second.stdout.read().startswith("✅ tiny/llama: mlx_lm.load() worked")
    finally:
        hub.slow_paths.clear()
        leftovers = _workers("tiny/slow", first) + _workers("tiny/llama", *([second] if second else []))
        _stop(first, *([second] if second else []))  # their workers are orphans now: found before, killed after
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


async def test_the_bots_queue_waits_while_another_process_holds_the_slot(store, hub, tmp_path, caplog):
    cache_dir = tmp_path / "models"
    queue = TrialQueue(store, QueueSettings(endpoint=hub.endpoint, cache_dir=cache_dir))
    caplog.set_level(logging.INFO, logger="bot.services.trial_queue")
    async with trial_slot(cache_dir, "canrun trial elsewhere"):  # a lock of its own: flock is per open file
        trial = await queue.enqueue(repo_id="tiny/llama", revision=None, requested_by=1, guild_id=None,
                                    channel_id=None, prompt="hi", max_tokens=2, verdict="loads")
        queue.start()
        for _ in range(600):
            if any("another trial runs on this host" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        assert "canrun trial elsewhere" in caplog.text
        assert (await queue.get(trial.id)).status == "queued"  # not claimed while it cannot run
        released_at = time.time()
    try:
        done = await asyncio.wait_for(queue.wait_finished(trial.id), 120)
    finally:
        await queue.stop()
    assert done.status == SUCCEEDED, (done.phase, done.error)
    assert done.started_at >= released_at


# ---- 11: the worker's environment ---------------------------------------------------------------------


async def test_the_worker_gets_an_allowlisted_environment(hub, tmp_path, monkeypatch):
    for name in ("MY_API_KEY", "AWS_SECRET_ACCESS_KEY", "DISCORD_TOKEN", "GITHUB_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "s3cret")
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_shell")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("MLX_METAL_DEBUG", "0")
    hub.slow_paths["tiny/slow/resolve/"] = 60
    spec = TrialSpec(repo_id="tiny/slow", revision=None, prompt="hi", max_tokens=2, endpoint=hub.endpoint,
                     cache_dir=tmp_path / "models", hf_token="hf_granted")
    process = start_trial(spec, TrialLimits())
    downloading = asyncio.Event()
    run = asyncio.create_task(process.run(lambda p: downloading.set() if p.phase == "download" else None))
    try:
        await asyncio.wait_for(downloading.wait(), 60)
        env = _environ_of(process.pid)
    finally:
        process.cancel()
        await run
        hub.slow_paths.clear()

    assert not {"MY_API_KEY", "AWS_SECRET_ACCESS_KEY", "DISCORD_TOKEN", "GITHUB_TOKEN", "OPENAI_API_KEY"} & set(env)
    assert "s3cret" not in env.values()
    assert env["HF_TOKEN"] == "hf_granted" and env["HF_ENDPOINT"] == hub.endpoint  # from the spec only
    assert env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8" and env["MLX_METAL_DEBUG"] == "0"
    assert env["HF_HUB_DISABLE_XET"] == "1" and str(PROJECT_ROOT) in env["PYTHONPATH"]


def _environ_of(pid: int) -> dict[str, str]:
    """A live process's environment: /proc on Linux, `ps eww` (which appends it to the command) elsewhere."""
    proc = Path(f"/proc/{pid}/environ")
    if proc.exists():
        entries = proc.read_bytes().decode("utf-8", errors="replace").split("\0")
    else:
        line = subprocess.run(["ps", "eww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                              check=True).stdout
        entries = line.split()  # values with spaces are cut, which no assertion above depends on
    return dict(entry.split("=", 1) for entry in entries if "=" in entry and not entry.startswith("-"))


# ---- 15: a kept model is not downloaded again ----------------------------------------------------------


def test_a_kept_model_is_said_to_be_on_disk_not_downloaded(config, capsys):
    config.write_text(config.read_text() + "keep_after_trial = true\n")

    assert main(["trial", "tiny/kept", "--max-tokens", "2"]) == 0
    first = capsys.readouterr()
    assert "canrun: downloaded 189 KB; loading…" in first.err.splitlines()
    assert " · downloaded 189 KB" in first.out

    assert main(["trial", "tiny/kept", "--max-tokens", "2", "--json"]) == 0
    second = capsys.readouterr()
    assert "canrun: already on disk (189 KB); loading…" in second.err.splitlines()
    assert "downloaded" not in second.err
    result = json.loads(second.out)
    assert (result["download_bytes"], result["present_bytes"]) == (0, 189_084)
