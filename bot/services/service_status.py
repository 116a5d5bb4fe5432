"""What both service managers (service_launchd.py, service_systemd.py) share: the error they raise, the status they
report, and reading the files they leave."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(Exception):
    """Something the owner can fix; the message says what. `usage` errors exit 2, the others 1."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass
class ServiceStatus:
    installed: bool
    running: bool = False
    pid: int | None = None
    since: str | None = None  # when it started, as the system tool says it
    detail: str = ""  # e.g. "last exit code 1", "restarted 3 times"
    log_tail: list[str] = field(default_factory=list)


def env_file_has(path: Path, name: str) -> bool:
    """Whether the environment file sets `name` (its value is not read into anything)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(line.strip().startswith(f"{name}=") and line.strip() != f"{name}=" for line in lines)


def tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:] if lines > 0 else []
