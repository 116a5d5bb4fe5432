"""The bot as a macOS LaunchAgent: ~/Library/LaunchAgents/<label>.plist, loaded into the user's GUI domain
(`launchctl bootstrap gui/$UID`), where the login keychain, and so DISCORD_TOKEN, can be read."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bot.core.service_files import LAUNCHD_LABEL, ServiceSpec, launch_agent_plist
from bot.services.command_runner import CommandRunner
from bot.services.keychain import in_keychain
from bot.services.service_status import ServiceError, ServiceStatus, tail

NO_TOKEN = ("DISCORD_TOKEN is not in the keychain, and a LaunchAgent does not see this shell's environment: "
            "store it first with `canrun secrets set DISCORD_TOKEN`")


class LaunchAgent:
    kind = "LaunchAgent"

    def __init__(self, spec: ServiceSpec, home: Path, run: CommandRunner, uid: int | None = None,
                 label: str = LAUNCHD_LABEL) -> None:
        self.spec, self.run, self.label = spec, run, label
        self.path = home / "Library" / "LaunchAgents" / f"{label}.plist"
        self.domain = f"gui/{os.getuid() if uid is None else uid}"

    def install(self) -> list[str]:
        if not in_keychain("DISCORD_TOKEN"):
            raise ServiceError(NO_TOKEN, usage=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        Path(self.spec.log_file).parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(launch_agent_plist(self.spec, self.label))
        if self._loaded():  # a reinstall: the new file is read only by a fresh bootstrap
            self._launchctl("bootout", f"{self.domain}/{self.label}")
        self._launchctl("enable", f"{self.domain}/{self.label}")  # undoes an earlier `launchctl disable`
        self._launchctl("bootstrap", self.domain, str(self.path))
        return [f"installed {self.path}", "the bot starts now, at each login, and again after a crash",
                f"its output goes to {self.spec.log_file}"]

    def uninstall(self) -> list[str]:
        said = []
        if self._loaded():
            self._launchctl("bootout", f"{self.domain}/{self.label}")
            said.append("stopped the bot")
        if self.path.exists():
            self.path.unlink()
            said.append(f"removed {self.path}")
        return said or ["not installed: nothing to do"]

    def status(self, lines: int) -> ServiceStatus:
        if not self.path.exists() and not self._loaded():
            return ServiceStatus(installed=False)
        printed = self.run(["launchctl", "print", f"{self.domain}/{self.label}"])
        state = _field(printed.stdout, "state")
        pid = _field(printed.stdout, "pid")
        last_exit = _field(printed.stdout, "last exit code")
        status = ServiceStatus(installed=True, running=state == "running", pid=int(pid) if pid else None,
                               detail=f"launchd: {state or 'not loaded'}"
                               + (f", last exit code {last_exit}" if last_exit else ""),
                               log_tail=self.logs(lines))
        if status.pid:
            started = self.run(["ps", "-o", "lstart=", "-p", str(status.pid)])
            status.since = started.stdout.strip() or None
        return status

    def logs(self, lines: int) -> list[str]:
        return tail(Path(self.spec.log_file), lines)

    def _loaded(self) -> bool:
        return self.run(["launchctl", "print", f"{self.domain}/{self.label}"]).returncode == 0

    def _launchctl(self, *args: str) -> None:
        done = self.run(["launchctl", *args])
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
            raise ServiceError(f"launchctl {args[0]} failed: {why}")


def _field(text: str, name: str) -> str | None:
    """A top-level `name = value` line of `launchctl print`."""
    match = re.search(rf"^\t{re.escape(name)} = (.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None
