"""The one way canrun runs a system tool (launchctl, systemctl, journalctl, ps): argv in, exit code and output
out. Tests pass a recorder instead."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from collections.abc import Callable, Sequence

EXIT_NOT_FOUND = 127  # as a shell says of a missing program


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


CommandRunner = Callable[[Sequence[str]], CommandResult]


def run_command(argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return CommandResult(EXIT_NOT_FOUND, stderr=f"{argv[0]}: not found on this machine")
    except subprocess.TimeoutExpired:
        return CommandResult(124, stderr=f"{argv[0]} did not answer within {timeout:g} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)
