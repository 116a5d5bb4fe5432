"""`canrun trial` end to end: the real CLI and worker, tiny models downloaded from the fake hub, loaded with the
real mlx-lm on the CPU. Each worker start imports mlx-lm (about a second), so only three tests start one."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlx_lm
import pytest

from bot.cli import main
from bot.render.progress import ProgressPrinter, byte_pair, phase_line, progress_line
from bot.render.trial_result import render_trial, terminal_safe
from bot.services.host import machine_name
from bot.services.model_cache import ModelCache
from bot.services.store import Store
from tests.conftest import seed_store
from bot.core.trial_outcome import TrialOutcome, TrialProgress
from bot.services.trial_runner import PROJECT_ROOT
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import tiny_llama_files

LLAMA = tiny_llama_files()
MODELS = "models--tiny--"  # the cache folders of this file's repos


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        hub.add_repo(FakeRepo("tiny/llama", LLAMA))
        hub.add_repo(FakeRepo("tiny/slow", LLAMA))
        yield hub


@pytest.fixture
def make_cli(tmp_path, capability_table, monkeypatch, capsys):
    """`make_cli(endpoint, **trials)`: runs `canrun ...` in-process with a fresh store that already knows the
    mlx-lm table, and a config whose [trials] section has these keys (not `enabled`: the CLI does not need it)."""
    db = tmp_path / "canrun.sqlite3"

    asyncio.run(seed_store(db, capability_table))

    def make(endpoint: str, **trials):
        trials = {"min_free_disk_gb": 0.0, "cache_dir": str(tmp_path / "models"), **trials}
        lines = [f"{key} = {json.dumps(value)}" for key, value in trials.items()]
        config = tmp_path / "config.toml"
        config.write_text(f'[hub]\nendpoint = "{endpoint}"\nmax_retries = 1\n[store]\npath = "{db}"\n'
                          '[memory]\nbudget_gb = 16.0\n[trials]\n' + "\n".join(lines) + "\n")
        monkeypatch.setenv("CANRUN_CONFIG", str(config))

        def run(*args: str) -> tuple[int, str, str]:
            code = main(list(args))
            out = capsys.readouterr()
            return code, out.out, out.err

        run.config, run.db, run.models = config, db, tmp_path / "models"
        return run

    return make


# ---- through the worker ------------------------------------------------------------------------


def test_a_tiny_model_loads_and_generates(make_cli, hub):
    cli = make_cli(hub.endpoint)

    code, out, err = cli("trial", "https://huggingface.co/tiny/llama", "--prompt", "hello", "--max-tokens", "8")

    assert code == 0, err
    assert out.startswith("✅ tiny/llama: mlx_lm.load() worked and the model generated text")
    assert "\n⚠️ Loaded, but the output looks broken: perplexity" in out  # random weights
    assert "  output check: perplexity " in out
    assert "tok/s (19 tokens)" in out and "generation " in out and "peak memory" in out
    assert f"mlx-lm {mlx_lm.__version__}" in out and "(CPU)" in out
    assert "  prompt: hello\n\n" in out and out.split("\n\n", 1)[1].strip()  # then the generated text
    # stderr is not a terminal here: one line per phase, nothing redrawn.
    assert "\r" not in err and "\x1b" not in err
    assert [line for line in err.splitlines() if line.startswith("canrun: ")] == [
        "canrun: tiny/llama: verdict loads, weights 183 KB; trial starting (Ctrl-C stops it)",
        "canrun: downloading…",
        "canrun: downloaded 189 KB; loading…",
        next(line for line in err.splitlines() if line.startswith("canrun: loaded in")),
        ]
    assert err.splitlines()[-1].endswith("s; generating…")
    assert not list(cli.models.glob(MODELS + "*"))  # keep_after_trial is off: the model is gone

    async def recorded():
        store = await Store.open(cli.db)
        try:
            verdicts = await store.verdict_history("tiny/llama")
            async with store.conn.execute("SELECT COUNT(*) FROM trials") as cur:
                trials = (await cur.fetchone())[0]
            async with store.conn.execute("SELECT repo_id, result FROM terminal_trials") as cur:
                terminal = await cur.fetchall()
        finally:
            await store.close()
        return verdicts, trials, terminal

    verdicts, trials, terminal = asyncio.run(recorded())
    assert [v["source"] for v in verdicts] == ["cli"] and trials == 0  # the verdict as `check` does; no game trial
    # ... but a measurement of this host, which the speed estimates calibrate on: this very repo is "measured" now.
    ((repo, result),) = terminal
    assert repo == "tiny/llama" and json.loads(result)["generation_tps"] > 0
    code, out, err = cli("check", "tiny/llama", "--json")
    assert code == 0, err
    speed = json.loads(out)["speed"]
    assert speed["label"] == "measured", speed


def test_a_trial_past_its_time_limit_fails_with_json(make_cli, hub):
    cli = make_cli(hub.endpoint, generate_timeout_seconds=0.2, max_tokens_limit=1_000_000, keep_after_trial=True)

    code, out, err = cli("trial", "tiny/llama", "--max-tokens", "1000000", "--json")

    assert code == 1, err
    (line,) = out.splitlines()
    result = json.loads(line)
    assert (result["repo"], result["verdict"], result["status"], result["phase"]) == (
        "tiny/llama", "loads", "timed_out", "generate")
    assert result["error"] == "the generate phase took longer than its limit of 0.2 s"
    assert result["load_seconds"] > 0 and result["max_tokens"] == 1_000_000
    assert result["prompt"] == "Explain in one sentence what MLX is."  # [trials] default_prompt
    assert [p.name for p in cli.models.glob(MODELS + "*")] == [MODELS + "llama"]  # kept, as configured


def test_ctrl_c_kills_the_worker_and_exits_130(make_cli, hub):
    cli = make_cli(hub.endpoint)
    assert cli("check", "tiny/slow")[0] == 0  # the verdict is cached: only the trial's download will be slow
    hub.slow_paths["tiny/slow/resolve/"] = 60
    proc = subprocess.Popen([sys.executable, "-m", "bot", "trial", "tiny/slow", "--config", str(cli.config)],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        err = _Lines(proc.stderr)
        err.wait_for("canrun: downloading…")
        worker = _worker_pid(cli.models)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: the worker has its own session and gets nothing
        proc.wait(timeout=10)

        assert proc.returncode == 130, err.text()
        assert "Traceback" not in err.text()
        assert proc.stdout.read().startswith("🛑 tiny/slow: cancelled while downloading")
        with pytest.raises(ProcessLookupError):
            os.killpg(worker, 0)
        assert not list(cli.models.glob(MODELS + "*"))  # the partial download went too
    finally:
        hub.slow_paths.clear()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if worker is not None:  # a failed test must not leave a worker behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker, signal.SIGKILL)


# ---- before any worker ---------------------------------------------------------------------------


@pytest.mark.parametrize(("repo", "trials", "words"), [
    ("odd-lab/custom-model-file", {}, "verdict is `remote_code`"),
    ("TheBloke/Llama-2-7B-GGUF", {}, "verdict is `unsupported_weights`"),
    ("mistralai/Mistral-7B-v0.1", {"max_download_gb": 1.0}, f"over {machine_name()}'s trial download limit"),
])
def test_what_the_bot_would_refuse_is_refused(make_cli, zoo_hub, repo, trials, words):
    cli = make_cli(zoo_hub.endpoint, **trials)

    code, out, err = cli("trial", repo)

    assert code == 1 and out == ""
    assert err.startswith(f"canrun: no trial for {repo}: ") and words in err and "Traceback" not in err


def test_a_refusal_in_json_names_its_reason(make_cli, zoo_hub):
    cli = make_cli(zoo_hub.endpoint)

    code, out, _ = cli("trial", "odd-lab/custom-model-file", "--json")

    assert code == 1
    refused = json.loads(out)
    assert refused == {"repo": "odd-lab/custom-model-file", "revision": None, "verdict": "remote_code",
                       "status": "refused", "phase": "check", "error": refused["error"], "reason": refused["error"]}
    assert "remote_code" in refused["error"]


def test_malformed_input_exits_2_without_network(make_cli, zoo_hub):
    cli = make_cli(zoo_hub.endpoint, max_tokens_limit=100, default_max_tokens=10)
    before = len(zoo_hub.requests)

    code, out, err = cli("trial", "../../etc/passwd")
    assert code == 2 and out == "" and "'../../etc/passwd'" in err and "org/name" in err
    code, _, err = cli("trial", "mistralai/Mistral-7B-v0.1", "--max-tokens", "101")
    assert code == 2 and "at most 100" in err and "max_tokens_limit" in err
    code, _, err = cli("trial", "mistralai/Mistral-7B-v0.1", "--max-tokens", "0")
    assert code == 2 and "positive whole number" in err
    assert cli("trial")[0] == 2

    assert len(zoo_hub.requests) == before


def test_a_model_the_bot_is_trying_is_never_evicted_for_room(make_cli, hub):
    cli = make_cli(hub.endpoint, cache_budget_gb=0.0003)  # 300 KB: the tiny model fits only by evicting the other
    busy = cli.models / "models--bot--busy" / "blobs"
    busy.mkdir(parents=True)
    (busy / "partial.incomplete").write_bytes(b"x" * 200_000)

    ModelCache(cli.models, 0).lease("bot/busy")  # as the bot holds it while its trial downloads

    code, out, err = cli("trial", "tiny/llama")

    assert code == 1
    assert out.startswith("❌ tiny/llama: the trial failed while starting") and "the rest is kept" in out
    assert (busy / "partial.incomplete").exists()


# ---- rendering -----------------------------------------------------------------------------------


def test_progress_line_draws_a_bar_that_fits_the_terminal():
    downloading = TrialProgress("download", bytes_done=600_000_000, bytes_total=1_300_000_000)

    line = progress_line(downloading, 80)
    assert line.startswith("downloading ") and line.endswith(" 0.6/1.3 GB  46%")
    assert "█" * 14 + "░" * 16 in line and len(line) <= 79
    assert progress_line(downloading, 30) == "downloading 0.6/1.3 GB  46%"  # no room for a bar
    assert len(progress_line(downloading, 12)) == 11 and progress_line(downloading, 12).endswith("…")
    assert progress_line(TrialProgress("download"), 80) == "downloading…"  # before the size is known
    loaded = TrialProgress("load", bytes_done=189_084, bytes_total=189_084)
    assert progress_line(loaded, 80) == "loading… (downloaded 189 KB)"
    generating = TrialProgress("generate", 10, 10, tokens=12, load_seconds=12.3)
    assert progress_line(generating, 80) == "generating 12 tokens (loaded in 12 s)"
    assert progress_line(TrialProgress("generate", tokens=1), 80) == "generating 1 token"
    assert progress_line(TrialProgress("generate", tokens=1), 80, max_tokens=64) == "generating 1/64 tokens"


def test_phase_lines_and_byte_pairs():
    assert phase_line(TrialProgress("download")) == "downloading…"
    assert phase_line(TrialProgress("load", 5_000_000, 5_000_000)) == "downloaded 5.0 MB; loading…"
    assert phase_line(TrialProgress("generate", load_seconds=0.456)) == "loaded in 0.46 s; generating…"
    assert byte_pair(0, 999) == "0/999 B"
    assert byte_pair(1_500, 250_000) == "2/250 KB"
    assert byte_pair(3 * 10**12, 4 * 10**12) == "3.0/4.0 TB"


def test_progress_printer_redraws_on_a_terminal_and_prints_phases_elsewhere():
    reports = [TrialProgress("download"), TrialProgress("download", 1, 4), TrialProgress("download", 4, 4),
               TrialProgress("load", 4, 4), TrialProgress("generate", 4, 4, tokens=3, load_seconds=1.0)]

    tty = io.StringIO()
    printer = ProgressPrinter(tty, max_tokens=8, tty=True, width=lambda: 60)
    for report in reports:
        printer(report)
    printer.finish()
    frames = tty.getvalue().split("\r")
    assert "\n" not in tty.getvalue() and frames[0] == "" and len(frames) == len(reports) + 2
    assert frames[2].startswith("downloading █") and frames[-2] == "generating 3/8 tokens (loaded in 1.00 s)\x1b[K"
    assert frames[-1] == "\x1b[K"  # the line is erased for what follows

    plain = io.StringIO()
    printer = ProgressPrinter(plain, tty=False)
    for report in reports:
        printer(report)
    printer.finish()
    assert plain.getvalue() == ("canrun: downloading…\ncanrun: downloaded 4 B; loading…\n"
                                "canrun: loaded in 1.00 s; generating…\n")


def test_results_in_text():
    failed = TrialOutcome("failed", "load", "Received 2 parameters not in model:\nlm_head.bias", 3.25,
                          {"load_seconds": 1.5})
    assert render_trial("org/model", failed, prompt="hi") == (
        "❌ org/model: the trial failed while loading (3.2 s).\n"
        "  Received 2 parameters not in model:\n"
        "  lm_head.bias\n"
        "  load 1.50 s")
    died = TrialOutcome("failed", None, "could not start the trial worker: no such file", 0.0, {})
    assert render_trial("org/model", died, prompt="hi").startswith("❌ org/model: the trial failed while starting")
    assert terminal_safe("red \x1b[31mtext\x07\n\tok") == "red �[31mtext�\n\tok"


class _Lines:
    """A child's stream, read in a thread so that a test can wait for a line without blocking forever."""

    def __init__(self, stream):
        self._lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self._lines.extend(stream), daemon=True)
        self._thread.start()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self._lines)):
            assert time.monotonic() < deadline, f"never printed {text!r}; stderr so far:\n{self.text()}"
            time.sleep(0.02)

    def text(self) -> str:
        self._thread.join(timeout=5)  # complete once the child has exited
        return "".join(self._lines)


def _worker_pid(models: Path) -> int:
    """The trial worker downloading into `models` (a folder of this test only), found as a user would, with ps."""
    listing = subprocess.run(["ps", "-ww", "-Ao", "pid=,args="], capture_output=True, text=True, check=True).stdout
    (pid,) = [int(line.split()[0]) for line in listing.splitlines()
              if "trial-worker" in line and f"--cache-dir={models.resolve()}" in line]
    return pid
