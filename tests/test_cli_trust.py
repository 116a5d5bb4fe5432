"""The command line under faults and odd input: failed repos in --json, options before the command, malformed and
pasted ids, an empty prompt, a closed stdout, what reaches stderr, units and small truths. Real CLI, real
huggingface_hub client, the fake hub over HTTP; the stream tests run `python -m bot` as a real process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import subprocess
import sys

import pytest

from bot.cli import main
from bot.cli_logging import cli_logging
from bot.services.trial_runner import PROJECT_ROOT
from tests.conftest import seed_store
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.hub_zoo import verdict_cases
from tests.fakes.tiny_model import tiny_llama_files

LLAMA = tiny_llama_files()
CONTRACT_KEYS = {"repo", "verdict", "model_type", "module", "reasons", "weights_bytes", "params", "memory",
                 "suggestions"}
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d", re.MULTILINE)


def _sharded_files() -> dict:
    """A zoo repo whose weights come in several shards (huggingface_hub draws a progress bar to parse them)."""
    entry = next(e for e in verdict_cases() if sum(name.startswith("model-") for name in e.repo.files) > 1)
    return dict(entry.repo.files)


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        for name in ("org/ok", "org/also-ok", "org/limited", "gpt2"):
            hub.add_repo(FakeRepo(name, dict(LLAMA)))
        hub.add_repo(FakeRepo("org/sharded", _sharded_files()))
        yield hub


@pytest.fixture
def cli(tmp_path, hub, capability_table, monkeypatch, capsys):
    """`canrun ...` in-process, with a config (max_retries 0: a failure is final at once) and a seeded store."""
    db = tmp_path / "canrun.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[hub]\nendpoint = "{hub.endpoint}"\nmax_retries = 0\n[store]\npath = "{db}"\n'
                      '[memory]\nbudget_gb = 16.0\n[suggestions]\ngithub_api = "http://127.0.0.1:9"\n'
                      f'timeout_seconds = 1.0\n[trials]\ncache_dir = "{tmp_path / "models"}"\nmin_free_disk_gb = 0.0\n')
    monkeypatch.setenv("CANRUN_CONFIG", str(config))
    asyncio.run(seed_store(db, capability_table))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    run.config, run.db = config, db
    return run


def canrun_process(config, *args: str, **kw) -> subprocess.CompletedProcess:
    """`python -m bot ARGS` as a real process (its own stdout, stderr and huggingface_hub state)."""
    env = {**os.environ, "CANRUN_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=PROJECT_ROOT, env=env, text=True,
                          stderr=subprocess.PIPE, timeout=120, **kw)


# ---- 5: --json keeps every repo ------------------------------------------------------------------


def test_check_json_has_one_object_per_repo_even_for_a_rate_limited_one(cli, hub):
    hub.fail_next(429, count=1000, path_contains="org/limited", retry_after=0)  # no other test asks for it

    code, out, err = cli("check", "--json", "org/ok", "org/limited", "org/also-ok")

    assert code == 1
    first, failed, last = (json.loads(line) for line in out.strip().splitlines())
    assert (first["repo"], last["repo"]) == ("org/ok", "org/also-ok")
    assert first["verdict"] is not None and last["verdict"] is not None
    assert failed["repo"] == "org/limited" and failed["verdict"] is None and failed["error"]
    assert CONTRACT_KEYS <= set(failed) and set(first) <= set(failed)  # the same keys a verdict has, and `error`
    assert failed["reasons"] == [] and failed["suggestions"] == []
    assert "org/limited: could not check" in err and "Traceback" not in err


def test_trial_json_says_why_no_trial_ran(cli, hub):
    cli.config.write_text(cli.config.read_text() + "max_download_gb = 0.00001\n")
    code, out, _ = cli("trial", "org/ok", "--json")
    assert code == 1
    refused = json.loads(out)
    assert (refused["status"], refused["phase"], refused["verdict"]) == ("refused", "check", "loads")
    assert "trial download limit" in refused["error"] and refused["reason"] == refused["error"]

    # Hugging Face down: no verdict, so no trial, and still one object.
    cli.config.write_text(cli.config.read_text().replace(hub.endpoint, "http://127.0.0.1:9"))
    code, out, err = cli("trial", "org/also-ok", "--json")  # a repo whose metadata is not cached yet
    assert code == 1 and "could not check" in err
    down = json.loads(out)
    assert (down["repo"], down["verdict"], down["status"], down["phase"]) == ("org/also-ok", None, "unchecked",
                                                                             "check")
    assert "could not reach Hugging Face" in down["error"]


# ---- 6: options before the command -----------------------------------------------------------------


def test_config_and_verbose_work_before_the_command(cli, tmp_path):
    code, out, err = cli("--config", str(tmp_path / "nonexistent.toml"), "check", "org/ok")
    assert code == 2 and out == "" and "nonexistent.toml does not exist" in err

    fresh = tmp_path / "fresh.toml"  # a database never migrated: the store logs each migration it applies
    fresh.write_text(cli.config.read_text().replace("canrun.sqlite3", "fresh.sqlite3"))
    code, _, err = cli("-v", "--config", str(fresh), "check", "org/ok")
    assert code == 0
    assert re.search(r"INFO bot\.services\.store: applied migration 001_initial", err), err
    code, _, err = cli("--config", str(fresh), "check", "--config", str(cli.config), "org/ok")  # the later one wins
    assert code == 0 and "bot.services" not in err

    quiet = tmp_path / "quiet.toml"
    quiet.write_text(cli.config.read_text().replace("canrun.sqlite3", "quiet.sqlite3"))
    code, _, err = cli("check", "--config", str(quiet), "org/ok")  # without -v: no log lines
    assert code == 0 and "applied migration" not in err


# ---- 7: malformed and pasted ids ---------------------------------------------------------------------


def test_malformed_ids_are_explained_not_traced(cli, hub):
    before = len(hub.requests)
    code, out, err = cli("check", "org/ok.git")
    assert code == 2 and out == ""
    assert err.strip() == "canrun: 'org/ok.git': That is a git address: the model id is `org/ok`, without `.git`."

    code, _, err = cli("check", "x/" + "y" * 5000)
    assert code == 2 and "Traceback" not in err and len(err) < 400  # the input is echoed cut short
    code, _, err = cli("trial", "org/" + "<" * 300)
    assert code == 2 and len(err) < 400
    assert len(hub.requests) == before


def test_invisible_characters_pasted_with_an_id_are_dropped(cli):
    code, out, err = cli("check", "--json", "\u200eorg/ok\u200b\ufeff")
    assert code == 0, err
    assert json.loads(out)["repo"] == "org/ok"


# ---- 8: an empty prompt -------------------------------------------------------------------------


def test_an_empty_prompt_is_refused_before_anything_runs(cli, hub, tmp_path):
    before = len(hub.requests)
    for prompt in ("", "   "):
        code, out, err = cli("trial", "org/ok", "--prompt", prompt)
        assert code == 2 and out == ""
        assert "--prompt is empty" in err and "default_prompt" in err
    assert len(hub.requests) == before
    assert not (tmp_path / "models").exists()


# ---- 9: streams -------------------------------------------------------------------------------------


def test_a_closed_stdout_ends_quietly(cli):
    """`canrun check A B | head -1`: the reader is gone when canrun writes. A pipe whose read end is closed
    gives that at the first write, every time."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = canrun_process(cli.config, "check", "org/ok", "org/also-ok", stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_stderr_carries_sentences_not_progress_bars_or_timestamps(cli, hub):
    hub.fail_next(503, count=1, path_contains="/api/models/org/sharded")  # one retry: a warning is logged
    cli.config.write_text(cli.config.read_text().replace("max_retries = 0", "max_retries = 1"))

    result = canrun_process(cli.config, "check", "org/sharded", stdout=subprocess.PIPE)

    assert result.returncode == 0, result.stderr
    assert "Parse safetensors" not in result.stderr and "%|" not in result.stderr
    assert not TIMESTAMPED.search(result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("canrun: ") for line in lines), result.stderr


def test_log_records_read_as_sentences_unless_verbose(capsys):
    """What the modules log (loggers `bot.*`, and huggingface_hub's, which has a handler of its own) reaches stderr
    once, as a `canrun: ` sentence; under -v with time, level and logger."""
    hub_logger = logging.getLogger("huggingface_hub")
    with cli_logging(verbose=False):
        logging.getLogger("bot.services.hub").warning("rate limited: try again in 30 s")
        logging.getLogger("bot.services.hub").info("not shown without -v")
        hub_logger.warning("from the hub library")
    assert capsys.readouterr().err == "canrun: rate limited: try again in 30 s\ncanrun: from the hub library\n"
    with cli_logging(verbose=True):
        logging.getLogger("bot.services.store").debug("shown under -v")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \S+ DEBUG bot\.services\.store: shown under -v\n", capsys.readouterr().err)


# ---- 13: one unit -------------------------------------------------------------------------------------


def test_budget_gb_is_decimal_like_every_other_gb(cli):
    code, out, _ = cli("check", "--json", "org/ok")
    assert code == 0
    assert {m["budget_bytes"] for m in json.loads(out)["memory"].values()} == {16 * 10**9}
    code, out, _ = cli("check", "org/ok")
    assert "memory (16.0 GB configured budget)" in out


# ---- 15: small truths -------------------------------------------------------------------------------


def test_check_help_lists_the_exit_codes(cli):
    code, out, _ = cli("check", "--help")
    assert code == 0
    assert "exit codes: 0 every repo got a verdict" in out and "; 2 malformed input" in out


def test_a_legacy_id_without_an_organisation_is_checked(cli, hub):
    code, out, err = cli("check", "--json", "gpt2")
    assert code == 0, err
    assert json.loads(out)["repo"] == "gpt2" and json.loads(out)["verdict"] is not None
    assert hub.count("GET", "/api/models/gpt2") >= 1


def test_refusals_name_this_host_and_the_free_disk(cli):
    machine = "this Mac" if platform.system() == "Darwin" else "this machine"
    cli.config.write_text(cli.config.read_text() + "max_download_gb = 0.00001\n")
    code, _, err = cli("trial", "org/ok")
    assert code == 1 and f"over {machine}'s trial download limit" in err
    assert platform.system() == "Darwin" or "Mac" not in err

    cli.config.write_text(cli.config.read_text().replace("min_free_disk_gb = 0.0", "min_free_disk_gb = 1000000.0")
                          .replace("max_download_gb = 0.00001\n", ""))
    code, _, err = cli("trial", "org/ok")
    assert code == 1
    assert re.search(r"would leave less than 1000 TB free on disk: [\d.]+ [KMGT]?B is free", err), err


def test_make_run_without_a_token_explains_and_succeeds(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "MAKEFLAGS", "MFLAGS")}
    env["CANRUN_CONFIG"] = str(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text(f'[store]\npath = "{tmp_path / "db.sqlite3"}"\n')
    # -o: take config.toml and the install stamp as they are (the test must not create or reinstall anything).
    result = subprocess.run(["make", "--no-print-directory", "-o", "config.toml", "-o", ".venv/.canrun-installed",
                             "run"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DISCORD_TOKEN is not set" in result.stderr
    assert "Error" not in result.stdout + result.stderr
