"""The bot as a systemd user unit: ~/.config/systemd/user/canrun.service, driven by `systemctl --user`, logging
to the journal. The token comes from the keychain (Secret Service, on a desktop) or from an environment file the
owner writes (mode 600) on a headless machine: the unit only names that file."""

from __future__ import annotations

from pathlib import Path

from bot.core.service_files import SYSTEMD_UNIT, ServiceSpec, systemd_unit
from bot.services.command_runner import CommandRunner
from bot.services.keychain import in_keychain
from bot.services.service_status import ServiceError, ServiceStatus, env_file_has

SHOW = ("ActiveState", "SubState", "MainPID", "ActiveEnterTimestamp", "NRestarts", "Result")


class SystemdUserUnit:
    kind = "systemd user unit"

    def __init__(self, spec: ServiceSpec, home: Path, run: CommandRunner, unit: str = SYSTEMD_UNIT) -> None:
        self.spec, self.run, self.unit = spec, run, unit
        self.path = home / ".config" / "systemd" / "user" / unit

    def install(self) -> list[str]:
        env_file = Path(self.spec.env_file)
        if not in_keychain("DISCORD_TOKEN") and not env_file_has(env_file, "DISCORD_TOKEN"):
            raise ServiceError(
                "a user service does not see this shell's environment, and DISCORD_TOKEN is in neither the keychain "
                f"nor {env_file}: run `canrun secrets set DISCORD_TOKEN`, or on a machine without a keychain write "
                f"the line DISCORD_TOKEN=... into {env_file} (chmod 600)", usage=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(systemd_unit(self.spec), encoding="utf-8")
        self._systemctl("daemon-reload")
        self._systemctl("enable", self.unit)
        self._systemctl("restart", self.unit)
        return [f"installed {self.path}", "the bot starts now, with your session, and again after a failure",
                f"its output goes to the journal: canrun service logs (or journalctl --user -u {self.unit})",
                "to start it at boot without logging in: loginctl enable-linger $USER"]

    def uninstall(self) -> list[str]:
        if not self.path.exists():
            return ["not installed: nothing to do"]
        self.run(["systemctl", "--user", "disable", "--now", self.unit])  # already stopped or unknown: fine
        self.path.unlink()
        self._systemctl("daemon-reload")
        return ["stopped the bot", f"removed {self.path}"]

    def status(self, lines: int) -> ServiceStatus:
        if not self.path.exists():
            return ServiceStatus(installed=False)
        shown = self.run(["systemctl", "--user", "show", self.unit, *(f"--property={p}" for p in SHOW)])
        props = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
        running = props.get("ActiveState") == "active"
        pid = int(props.get("MainPID") or 0) or None
        detail = f"systemd: {props.get('ActiveState', 'unknown')} ({props.get('SubState', '?')})"
        if props.get("NRestarts", "0") not in ("", "0"):
            detail += f", restarted {props['NRestarts']} times"
        if props.get("Result") not in (None, "", "success"):
            detail += f", last result {props['Result']}"
        return ServiceStatus(installed=True, running=running, pid=pid,
                             since=(props.get("ActiveEnterTimestamp") or None) if running else None,
                             detail=detail, log_tail=self.logs(lines))

    def logs(self, lines: int) -> list[str]:
        done = self.run(["journalctl", "--user", "--unit", self.unit, "--lines", str(lines), "--no-pager",
                         "--output", "short-iso"])
        return done.stdout.splitlines()[-lines:] if done.returncode == 0 and lines > 0 else []

    def _systemctl(self, *args: str) -> None:
        done = self.run(["systemctl", "--user", *args])
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
            raise ServiceError(f"systemctl --user {args[0]} failed: {why}")
