"""One trial at a time on this host, whoever starts it: the bot's queue and `canrun trial` take the same slot.

Each checks its own memory limits against a machine it assumes idle, so two trials at once could together ask
for more than the machine has. The slot is a locked file (flock, as the model cache's leases) next to the model
cache both share: the lock dies with its process, so a crashed holder never blocks the next trial. The file also
says who holds it, for the one who waits.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from contextlib import asynccontextmanager
from pathlib import Path
from collections.abc import AsyncIterator, Callable

SLOT_FILE = ".canrun-trial.lock"
POLL_SECONDS = 0.5  # how often a waiter tries again: flock cannot be awaited, and a blocked thread cannot be cancelled


class SlotAbandoned(Exception):
    """The waiter gave up (e.g. Ctrl-C) before the slot came free."""


class TrialSlot:
    """The held slot; `describe` says who holds it now, for those waiting."""

    def __init__(self, fd: int):
        self._fd = fd

    def describe(self, holder: str) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{holder} (pid {os.getpid()})".encode("utf-8", errors="replace")[:500], 0)


def slot_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / SLOT_FILE


def slot_holder(cache_dir: Path) -> str:
    """Who holds the slot, as they described themselves (read without the lock: a hint, not a promise)."""
    try:
        text = slot_path(cache_dir).read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        text = ""
    return text or "another process"


@asynccontextmanager
async def trial_slot(cache_dir: Path, holder: str, *, on_wait: Callable[[str], None] | None = None,
                     give_up: asyncio.Event | None = None) -> AsyncIterator[TrialSlot]:
    """Hold the host's trial slot for the block. While another process holds it, wait: `on_wait(holder)` is
    called once, and `give_up` being set ends the wait with SlotAbandoned."""
    path = slot_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        told = False
        while not _try_lock(fd):
            if not told and on_wait is not None:
                on_wait(slot_holder(cache_dir))
                told = True
            if give_up is None:
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                await asyncio.wait_for(give_up.wait(), POLL_SECONDS)
            except TimeoutError:
                continue
            raise SlotAbandoned()
        slot = TrialSlot(fd)
        slot.describe(holder)
        try:
            yield slot
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # and with it the lock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
