"""Looking at processes from a test: whether one still runs (a zombie that awaits its parent's wait() does not)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # on Linux a zombie still answers kill(pid, 0): it has exited all the same
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True
