"""`canrun service`: the LaunchAgent plist and the systemd user unit written for real into a temporary home,
read back (plistlib; the unit field by field), and launchctl / systemctl / journalctl / ps answered by a
recorder in place of the one command runner."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.cli_service import run_service
from bot.config import load_config
from bot.core.service_files import ServiceSpec, systemd_unit
from bot.services.command_runner import CommandResult, run_command
from bot.services.keychain import KEYCHAIN_SERVICE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-51ab-never-in-a-file"

LAUNCHCTL_PRINT = """gui/501/org.canrun.bot = {
\tactive count = 1
\tpath = /Users/me/Library/LaunchAgents/org.canrun.bot.plist
\ttype = LaunchAgent
\tstate = running

\tprogram = /Users/me/canrun/.venv/bin/python
\tpid = 4242
\tlast exit code = (never exited)
\tjob state = running
}
"""


class Recorder:
    """Stands in for run_command: records each argv, answers from `answers` (first matching argv prefix)."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv):
        self.calls.append(list(argv))
        for prefix, result in self.answers.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return result
        return CommandResult(0)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A config file in a folder with a space and a % in its name (quoting), and a home of its own."""
    folder = tmp_path / "study group 100%"
    folder.mkdir()
    (folder / "config.toml").write_text('[logging]\nfile = "logs/canrun.log"\n')
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)  # the shell has it: it must still never reach a file
    return folder


def service(action: str, system: str, home: Path, run: Recorder, *more: str) -> int:
    args = build_parser().parse_args(["service", action, *more])
    return run_service(args, load_config(None), system=system, home=home, run=run)


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_the_launch_agent_plist_parses_back_and_bootstraps_in_the_gui_domain(checkout, keychain, tmp_path):
    keychain.set_password(KEYCHAIN_SERVICE, "DISCORD_TOKEN", TOKEN)
    home, run = tmp_path / "home", Recorder({("launchctl", "print"): CommandResult(113, stderr="not found")})
    assert service("install", "Darwin", home, run) == 0
    path = home / "Library/LaunchAgents/org.canrun.bot.plist"
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == "org.canrun.bot"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "bot", "--config", str(checkout / "config.toml"), "bot"]
    assert plist["WorkingDirectory"] == str(checkout)
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Standard"
    assert plist["StandardErrorPath"] == plist["StandardOutPath"] == str(checkout / "logs/service.log")
    assert (checkout / "logs").is_dir()
    assert not any("TOKEN" in k for k in plist["EnvironmentVariables"])
    assert TOKEN.encode() not in all_bytes(home) + all_bytes(checkout)
    uid = os.getuid()
    assert run.calls == [["launchctl", "print", f"gui/{uid}/org.canrun.bot"],
                         ["launchctl", "enable", f"gui/{uid}/org.canrun.bot"],
                         ["launchctl", "bootstrap", f"gui/{uid}", str(path)]]


def test_a_reinstall_boots_the_old_agent_out_first_and_uninstall_removes_it(checkout, keychain, tmp_path, capsys):
    keychain.set_password(KEYCHAIN_SERVICE, "DISCORD_TOKEN", TOKEN)
    home, run = tmp_path / "home", Recorder()  # launchctl print succeeds: it is loaded
    assert service("install", "Darwin", home, run) == 0
    assert ["launchctl", "bootout", f"gui/{os.getuid()}/org.canrun.bot"] in run.calls
    assert service("uninstall", "Darwin", home, run) == 0
    assert not (home / "Library/LaunchAgents/org.canrun.bot.plist").exists()
    assert run.calls[-1] == ["launchctl", "bootout", f"gui/{os.getuid()}/org.canrun.bot"]
    assert "removed" in capsys.readouterr().out


def test_on_a_mac_the_token_must_be_in_the_keychain_not_just_this_shell(checkout, keychain, tmp_path, capsys):
    home, run = tmp_path / "home", Recorder()
    assert service("install", "Darwin", home, run) == 2  # DISCORD_TOKEN only in the environment
    assert "canrun secrets set DISCORD_TOKEN" in capsys.readouterr().err
    assert run.calls == [] and not home.exists()


def test_a_failing_launchctl_is_reported_with_its_message_and_exit_1(checkout, keychain, tmp_path, capsys):
    keychain.set_password(KEYCHAIN_SERVICE, "DISCORD_TOKEN", TOKEN)
    run = Recorder({("launchctl", "print"): CommandResult(113),
                    ("launchctl", "bootstrap"): CommandResult(5, stderr="Bootstrap failed: 5: Input/output error")})
    assert service("install", "Darwin", tmp_path / "home", run) == 1
    assert "launchctl bootstrap failed: Bootstrap failed: 5" in capsys.readouterr().err


def test_mac_status_says_it_runs_since_when_and_its_last_log_lines(checkout, keychain, tmp_path, capsys):
    keychain.set_password(KEYCHAIN_SERVICE, "DISCORD_TOKEN", TOKEN)
    home = tmp_path / "home"
    assert service("install", "Darwin", home, Recorder()) == 0
    (checkout / "logs/service.log").write_text("".join(f"line {i}\n" for i in range(30)))
    run = Recorder({("launchctl", "print"): CommandResult(0, LAUNCHCTL_PRINT),
                    ("ps",): CommandResult(0, "Sun Dec  6 09:12:03 2026\n")})
    assert service("status", "Darwin", home, run, "-n", "3") == 0
    out = capsys.readouterr().out
    assert "running (pid 4242) since Sun Dec  6 09:12:03 2026" in out
    assert "last exit code (never exited)" in out
    assert out.rstrip().endswith("  line 27\n  line 28\n  line 29")
    assert ["ps", "-o", "lstart=", "-p", "4242"] in run.calls


def unit_fields(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


def test_the_systemd_unit_field_by_field_and_its_enabling(checkout, keychain, tmp_path):
    keychain.set_password(KEYCHAIN_SERVICE, "DISCORD_TOKEN", TOKEN)
    home, run = tmp_path / "home", Recorder()
    assert service("install", "Linux", home, run) == 0
    path = home / ".config/systemd/user/canrun.service"
    unit = unit_fields(path.read_text())
    svc = unit["Service"]
    config = str(checkout / "config.toml").replace("%", "%%")
    assert svc["ExecStart"] == [f'{sys.executable} -m bot --config "{config}" bot']
    assert svc["WorkingDirectory"] == [str(checkout).replace("%", "%%")]
    assert svc["Restart"] == ["on-failure"] and svc["RestartPreventExitStatus"] == ["2"]
    assert svc["StandardOutput"] == svc["StandardError"] == ["journal"]
    assert svc["EnvironmentFile"] == [f"-{home}/.config/canrun/environment"]
    assert all("TOKEN" not in e for e in svc["Environment"]) and "PYTHONUNBUFFERED=1" in svc["Environment"]
    assert unit["Install"]["WantedBy"] == ["default.target"]
    assert TOKEN.encode() not in all_bytes(home) + all_bytes(checkout)
    assert run.calls == [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "canrun.service"],
                         ["systemctl", "--user", "restart", "canrun.service"]]
    if shutil.which("systemd-analyze"):  # where it is installed, systemd's own reading of the file
        verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0 and "canrun.service" not in verify.stderr, verify.stderr


def test_headless_linux_takes_the_token_from_the_environment_file_it_names(checkout, tmp_path, capsys):
    home, run = tmp_path / "home", Recorder()
    assert service("install", "Linux", home, run) == 2  # no keychain, no environment file
    assert "DISCORD_TOKEN=... into" in capsys.readouterr().err and run.calls == []
    env_file = home / ".config/canrun/environment"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("DISCORD_TOKEN=written-by-the-owner\n")
    assert service("install", "Linux", home, run) == 0
    assert "loginctl enable-linger" in capsys.readouterr().out


def test_linux_status_and_logs_come_from_systemctl_show_and_the_journal(checkout, keychain, tmp_path, capsys):
    keychain.set_password(KEYCHAIN_SERVICE, "DISCORD_TOKEN", TOKEN)
    home = tmp_path / "home"
    assert service("install", "Linux", home, Recorder()) == 0
    shown = ("ActiveState=active\nSubState=running\nMainPID=777\nActiveEnterTimestamp=Sun 2026-12-06 09:00:00 UTC\n"
             "NRestarts=2\nResult=success\n")
    run = Recorder({("systemctl", "--user", "show"): CommandResult(0, shown),
                    ("journalctl",): CommandResult(0, "2026-12-06T09:00:01 host canrun[777]: ready\n")})
    assert service("status", "Linux", home, run) == 0
    out = capsys.readouterr().out
    assert "running (pid 777) since Sun 2026-12-06 09:00:00 UTC" in out and "restarted 2 times" in out
    assert "canrun[777]: ready" in out
    assert service("logs", "Linux", home, run, "--lines", "5") == 0
    assert run.calls[-1] == ["journalctl", "--user", "--unit", "canrun.service", "--lines", "5", "--no-pager",
                             "--output", "short-iso"]
    assert service("uninstall", "Linux", home, run) == 0
    assert not (home / ".config/systemd/user/canrun.service").exists()
    assert ["systemctl", "--user", "disable", "--now", "canrun.service"] in run.calls


def test_exec_start_quotes_and_escapes_what_systemd_would_expand():
    spec = ServiceSpec(argv=("/opt/my venv/python", "-m", "bot", "--config", "/a/$HOME/50%.toml", "bot"),
                       working_dir="/a", log_file="/a/s.log", env={"PATH": "/usr/bin"})
    (line,) = [x for x in systemd_unit(spec).splitlines() if x.startswith("ExecStart=")]
    assert line == 'ExecStart="/opt/my venv/python" -m bot --config /a/$$HOME/50%%.toml bot'


def test_another_system_is_a_usage_error(checkout, tmp_path, capsys):
    assert service("status", "Windows", tmp_path, Recorder()) == 2
    assert "macOS (launchd) and Linux (systemd)" in capsys.readouterr().err


def test_the_runner_reports_a_missing_program_instead_of_raising():
    done = run_command(["canrun-no-such-program-here"])
    assert done.returncode == 127 and "not found" in done.stderr


def test_the_cli_as_a_real_process(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=60)

    if sys.platform == "linux":  # not installed: answered without asking systemctl
        status = cli("service", "status", "--config", str(tmp_path / "none.toml"))
        assert status.returncode == 2 and "does not exist" in status.stderr
        status = cli("service", "status")
        assert status.returncode == 0 and "not installed" in status.stdout
    for bad in (["service"], ["service", "logs", "-n", "0"], ["service", "start"]):
        done = cli(*bad)
        assert done.returncode == 2 and "Traceback" not in done.stderr, bad
