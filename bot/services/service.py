"""`canrun service`: the bot as a per-user service, a LaunchAgent on macOS and a systemd user unit on Linux.

What both need from the configuration is a ServiceSpec (bot/core/service_files.py); the platform modules write
the file and drive launchctl / systemctl through one CommandRunner, and report a ServiceStatus
(service_status.py, which they share without importing this module).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bot.config import Config
from bot.core.service_files import ServiceSpec
from bot.services.command_runner import CommandRunner, run_command
from bot.services.service_status import ServiceError

SERVICE_LOG = "service.log"  # launchd's stdout and stderr, next to canrun's own log
ENV_FILE = Path(".config/canrun/environment")  # under the home folder: headless Linux's token, written by its owner
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def service_spec(config: Config, config_file: Path | None, home: Path) -> ServiceSpec:
    """How to start this checkout's bot: this interpreter (the venv's: not resolved, so the venv stays active),
    the config file by absolute path, and its folder as the working directory."""
    argv = [sys.executable, "-m", "bot"]
    if config_file is not None:
        argv += ["--config", str(config_file.resolve())]
    argv.append("bot")
    working_dir = config_file.resolve().parent if config_file is not None else Path.cwd()
    log_file = config.path(config.logging.file).parent / SERVICE_LOG if config.logging.file else \
        working_dir / ".canrun" / SERVICE_LOG
    venv_bin = str(Path(sys.executable).parent)
    env = {"PATH": f"{venv_bin}:{SAFE_PATH}", "PYTHONUNBUFFERED": "1"}
    return ServiceSpec(argv=tuple(argv), working_dir=str(working_dir), log_file=str(_absolute(log_file)), env=env,
                       env_file=str(home / ENV_FILE))


def config_file_of(explicit: str | None) -> Path | None:
    """The file load_config read: --config, else $CANRUN_CONFIG, else ./config.toml when it exists."""
    path = explicit or os.environ.get("CANRUN_CONFIG") or "config.toml"
    return Path(path) if Path(path).exists() else None


def service_manager(system: str, spec: ServiceSpec, home: Path, run: CommandRunner = run_command):
    if system == "Darwin":
        from bot.services.service_launchd import LaunchAgent

        return LaunchAgent(spec, home, run)
    if system == "Linux":
        from bot.services.service_systemd import SystemdUserUnit

        return SystemdUserUnit(spec, home, run)
    raise ServiceError(f"canrun service knows macOS (launchd) and Linux (systemd), not {system}", usage=True)


def _absolute(path: Path) -> Path:
    return path if path.is_absolute() else Path.cwd() / path
