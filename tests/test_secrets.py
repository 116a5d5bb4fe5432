"""Secrets from the environment, else the system keychain (keyring, here with test backends); never printed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import keyring

from bot.cli import main
from bot.config import Config
from bot.services.keychain import KEYCHAIN_SERVICE, secret, secret_status

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-3c1f-never-printed"


def run_bot_cli(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=PROJECT_ROOT, input=stdin, text=True,
                          capture_output=True, env={**os.environ, **env}, timeout=60)


def test_the_environment_wins_over_the_keychain_and_the_config_reads_both(keychain, monkeypatch):
    keychain.set_password(KEYCHAIN_SERVICE, "HF_TOKEN", "from-keychain")
    assert Config().hf_token == "from-keychain" and secret_status("HF_TOKEN").source == "keychain"
    monkeypatch.setenv("HF_TOKEN", "from-env")
    assert Config().hf_token == "from-env" and secret_status("HF_TOKEN").source == "environment"
    assert Config().discord_token is None and secret_status("DISCORD_TOKEN").source is None


def test_without_a_keychain_the_environment_path_stays(monkeypatch):
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # what a headless Linux gets: every call raises NoKeyringError
    try:
        assert secret("GITHUB_TOKEN") is None
        monkeypatch.setenv("GITHUB_TOKEN", "env-only")
        assert Config().github_token == "env-only"
    finally:
        keyring.set_keyring(before)


def test_secrets_set_reads_stdin_stores_it_and_never_prints_it(keychain, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(TOKEN + "\n"))
    assert main(["secrets", "set", "discord_token"]) == 0
    assert keychain.items == {(KEYCHAIN_SERVICE, "DISCORD_TOKEN"): TOKEN}
    assert main(["secrets", "status", "-v"]) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert "DISCORD_TOKEN  set, from the keychain (test keychain)" in out
    assert "HF_TOKEN       not set" in out and "keychain: test keychain" in out
    assert main(["secrets", "delete", "DISCORD_TOKEN"]) == 0 and keychain.items == {}
    assert "removed from the keychain" in capsys.readouterr().out


def test_secrets_set_with_nothing_entered_changes_nothing(keychain, monkeypatch, capsys):
    keychain.set_password(KEYCHAIN_SERVICE, "HF_TOKEN", "kept")
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["secrets", "set", "HF_TOKEN"]) == 2
    assert "nothing entered" in capsys.readouterr().err and keychain.items[(KEYCHAIN_SERVICE, "HF_TOKEN")] == "kept"


def test_a_keychain_round_trip_through_real_processes(tmp_path):
    env = {"PYTHON_KEYRING_BACKEND": "tests.fakes.keyring_backend.FileKeyring",
           "CANRUN_TEST_KEYRING_FILE": str(tmp_path / "keychain.json")}
    stored = run_bot_cli("secrets", "set", "DISCORD_TOKEN", stdin=TOKEN + "\n", **env)
    assert stored.returncode == 0, stored.stderr
    assert "DISCORD_TOKEN stored in test file keychain" in stored.stdout
    status = run_bot_cli("--config", str(tmp_path / "missing.toml"), "secrets", "status", **env)  # no config needed
    assert status.returncode == 0 and "DISCORD_TOKEN  set, from the keychain" in status.stdout
    assert TOKEN not in stored.stdout + stored.stderr + status.stdout + status.stderr


def test_headless_linux_gets_a_clear_message_and_exit_2():
    done = run_bot_cli("secrets", "set", "DISCORD_TOKEN", stdin=TOKEN + "\n",
                       PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no system keychain here" in done.stderr and "Set DISCORD_TOKEN in the environment" in done.stderr
    status = run_bot_cli("secrets", "status", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                         DISCORD_TOKEN=TOKEN)
    assert status.returncode == 0 and "DISCORD_TOKEN  set, from the environment" in status.stdout
    assert "keychain: none here" in status.stdout and TOKEN not in status.stdout


def test_an_unknown_secret_name_is_a_usage_error():
    done = run_bot_cli("secrets", "set", "AWS_SECRET")
    assert done.returncode == 2 and "invalid choice" in done.stderr and "Traceback" not in done.stderr
