"""The files that make the bot a service: a macOS LaunchAgent property list and a systemd user unit.

Pure: a ServiceSpec in, the file's bytes or text out. The spec's environment is a fixed, secret-free set; the
token reaches the service through the keychain (or, on Linux, an environment file the owner writes), never here.
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass, field

LAUNCHD_LABEL = "org.canrun.bot"
SYSTEMD_UNIT = "canrun.service"
EXIT_USAGE = 2  # `canrun bot` without a token or with a bad config: restarting would not help


@dataclass(frozen=True)
class ServiceSpec:
    argv: tuple[str, ...]  # the program and its arguments: the venv's python -m bot --config ... bot
    working_dir: str
    log_file: str  # launchd: stdout and stderr go here (systemd: the journal)
    env: dict[str, str] = field(default_factory=dict)
    env_file: str = ""  # systemd: an optional file of KEY=value lines the owner may write (headless Linux)


def launch_agent_plist(spec: ServiceSpec, label: str = LAUNCHD_LABEL) -> bytes:
    """~/Library/LaunchAgents/<label>.plist: started at login (RunAtLoad) and again after a crash (KeepAlive
    on an unsuccessful exit; launchd waits ThrottleInterval seconds between starts)."""
    return plistlib.dumps({
        "Label": label,
        "ProgramArguments": list(spec.argv),
        "WorkingDirectory": spec.working_dir,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        # Standard, not Background: a background job's CPU and disk are throttled, which would slow trials and
        # skew the speeds they measure.
        "ProcessType": "Standard",
        "StandardOutPath": spec.log_file,
        "StandardErrorPath": spec.log_file,
        "EnvironmentVariables": dict(spec.env),
    })


def systemd_unit(spec: ServiceSpec, description: str = "canrun Discord bot (MLX study group)") -> str:
    """~/.config/systemd/user/canrun.service: restarted on failure (not after a usage error, exit 2), logs to
    the journal, started with the user's session (or at boot with `loginctl enable-linger`)."""
    lines = [
        "[Unit]",
        f"Description={description}",
        "StartLimitIntervalSec=600",
        "StartLimitBurst=10",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={_escape_specifiers(spec.working_dir)}",
        "ExecStart=" + " ".join(_quote(_escape_specifiers(a).replace("$", "$$")) for a in spec.argv),
        *(f"Environment={_quote(_escape_specifiers(f'{k}={v}'))}" for k, v in spec.env.items()),
        *([f"EnvironmentFile=-{_escape_specifiers(spec.env_file)}"] if spec.env_file else []),
        "Restart=on-failure",
        "RestartSec=10",
        f"RestartPreventExitStatus={EXIT_USAGE}",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=canrun",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _escape_specifiers(text: str) -> str:
    return text.replace("%", "%%")  # systemd expands %h, %u, ... in these settings


def _quote(word: str) -> str:
    """systemd's own quoting: double quotes with backslash escapes, only when needed."""
    if word and not any(c in word for c in ' \t"\'\\;'):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
