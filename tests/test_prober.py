"""The warm dry-load process under stress: time limit, memory ceiling, what it inherits, what it reads.

Each test starts its own real child (`Prober`) and closes it; nothing is mocked. A loader that hangs is a
real one: mlx-lm opening a config.json that is a named pipe nobody writes to.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from bot.core.metadata import RepoMetadata
from bot.services.dry_load import cache_key
from bot.services.environment import installed_fingerprint
from bot.services.prober import Prober, ProberError, ProberSettings
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import code_only_tokenizer, tiny_llama_files, write_model
from tests.processes import alive
from tests.test_verdict_matches_load import canrun_check


@pytest.fixture
def hanging_model(tmp_path) -> Path:
    """A model folder whose config.json is a FIFO: mlx-lm's load_config blocks opening it, forever."""
    folder = tmp_path / "hanging"
    folder.mkdir()
    os.mkfifo(folder / "config.json")
    return folder


@pytest.fixture
def model(tmp_path) -> Path:
    return write_model(tmp_path / "model", tiny_llama_files())


def dry_load(prober: Prober, folder: Path) -> dict:
    return prober.request({"path": str(folder), "conversions": []})


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def test_a_dry_load_past_its_time_limit_kills_the_child_and_the_next_one_starts_afresh(hanging_model, model):
    prober = Prober(ProberSettings(timeout_seconds=1))
    try:
        first = prober.hello().pid
        with pytest.raises(ProberError, match="longer than"):
            dry_load(prober, hanging_model)
        assert not alive(first), "the hung child was killed (and reaped)"
        assert dry_load(prober, model)["ok"]
        assert prober.starts == 2
        assert prober.hello().pid != first
    finally:
        prober.close()


def test_a_child_past_its_memory_ceiling_is_killed(hanging_model, model):
    prober = Prober(ProberSettings(memory_ceiling_bytes=1024, timeout_seconds=60))
    try:
        first = prober.hello().pid
        with pytest.raises(ProberError, match="memory ceiling"):
            dry_load(prober, hanging_model)
        assert not alive(first)
        assert prober.starts == 1
    finally:
        prober.close()


async def test_a_memory_ceiling_hit_leaves_the_static_verdict_with_a_note(tmp_path, capability_table):
    """Every dry load goes past a ceiling of 1 kB: there is no answer from mlx-lm, so the verdict is canrun's
    static one, and it says so."""
    prober = Prober(ProberSettings(memory_ceiling_bytes=1024))
    try:
        with FakeHub() as hub:
            hub.add_repo(FakeRepo("tiny/llama", tiny_llama_files()))
            verdict = await canrun_check(hub, "tiny/llama", tmp_path, capability_table, prober=prober)
    finally:
        prober.close()
    assert (verdict.verdict, verdict.checked_by) == ("loads", "static"), verdict.reasons
    notes = [r for r in verdict.reasons if r.startswith("Note: mlx-lm's own dry load gave no answer")]
    assert notes and "memory ceiling" in notes[0], verdict.reasons
    assert list((tmp_path / "dry").iterdir()) == []


def test_the_child_never_sees_the_parents_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_parent_secret")
    monkeypatch.setenv("MY_API_KEY", "parent-api-key")
    prober = Prober()
    try:
        pid = prober.hello().pid
        env = environment(pid)
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        prober.close()
    assert env.get("HF_HUB_OFFLINE") == "1"  # the environment read is the child's, as the prober set it
    assert "HF_TOKEN" not in env and "MY_API_KEY" not in env
    assert b"hf_parent_secret" not in raw and b"parent-api-key" not in raw


def test_the_loader_reads_dev_null_and_writes_to_stderr():
    """Requests travel on a private copy of the pipe: fd 0, what the loader would read, is /dev/null, and
    fd 1, what it would print to, is the stderr pipe, never the answers."""
    prober = Prober()
    try:
        pid = prober.hello().pid
        stdin, stdout, stderr = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2))
    finally:
        prober.close()
    assert stdin == "/dev/null"
    assert stdout == stderr


def test_a_loader_that_asks_on_stdin_gets_no_answer_and_runs_no_code(tmp_path):
    """transformers asks "Do you wish to run the custom code? [y/N]" on stdin for a tokenizer that is only
    code. In the child it reads end-of-file at once: a refusal, not a hang, and the repo's code never runs
    (it would raise a RuntimeError of its own). The service never stages a `.py`; this folder does."""
    folder = write_model(tmp_path / "code", code_only_tokenizer(tiny_llama_files()))
    prober = Prober(ProberSettings(timeout_seconds=60))
    try:
        answer = dry_load(prober, folder)
        assert prober.starts == 1
    finally:
        prober.close()
    assert not answer["ok"] and answer["phase"] == "tokenizer", answer
    assert "trust_remote_code" in answer["message"], answer
    assert "tokenizer code was run" not in answer["message"], answer


def test_a_dry_load_answer_is_cached_under_the_installed_packages():
    prober = Prober()
    try:
        hello = prober.hello()
    finally:
        prober.close()
    assert hello.environment == installed_fingerprint()  # the child's environment is this one
    meta = RepoMetadata("org/m", sha="0123abcd")
    after_an_install = dataclasses.replace(hello, environment="another-set-of-packages")
    assert cache_key(meta, hello, False) != cache_key(meta, after_an_install, False)
