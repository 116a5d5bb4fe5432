"""A trial's progress in a terminal: one line redrawn in place on a TTY, one plain line per phase elsewhere."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TextIO

from bot.core.units import human_bytes
from bot.core.trial_outcome import TrialProgress

BAR_MAX = 30
BAR_MIN = 5  # narrower than this, the bar says nothing: it is left out
CLEAR_TO_END = "\x1b[K"
PHASE_WORDS = {"download": "downloading", "load": "loading", "generate": "generating"}


def progress_line(p: TrialProgress, width: int, max_tokens: int | None = None) -> str:
    """The TTY line for this progress, at most `width - 1` characters (the last column would wrap on some
    terminals)."""
    room = max(1, width - 1)
    if p.phase == "download":
        if not p.bytes_total:
            return _fit("downloading…", room)
        amounts = f"{byte_pair(p.bytes_done, p.bytes_total)} {share(p.bytes_done, p.bytes_total):>4.0%}"
        bar_width = min(BAR_MAX, room - len("downloading ") - len(amounts) - 1)
        if bar_width < BAR_MIN:
            return _fit(f"downloading {amounts}", room)
        return _fit(f"downloading {bar(p.bytes_done, p.bytes_total, bar_width)} {amounts}", room)
    if p.phase == "load":
        return _fit("loading…" + (f" ({fetched(p)})" if p.bytes_total else ""), room)
    if p.phase == "generate":
        if not p.tokens:
            what = "generating…"
        elif max_tokens:
            what = f"generating {p.tokens}/{max_tokens} tokens"
        else:
            what = f"generating {p.tokens} token{'' if p.tokens == 1 else 's'}"
        return _fit(what + (f" (loaded in {seconds(p.load_seconds)})" if p.load_seconds is not None else ""), room)
    return _fit(f"{PHASE_WORDS.get(p.phase, p.phase)}…", room)


def phase_line(p: TrialProgress) -> str:
    """The plain line printed when a phase starts (not a TTY: logs and pipes get no redraws), with what the
    previous phase achieved."""
    if p.phase == "load" and p.bytes_total:
        return f"{fetched(p)}; loading…"
    if p.phase == "generate" and p.load_seconds is not None:
        return f"loaded in {seconds(p.load_seconds)}; generating…"
    return f"{PHASE_WORDS.get(p.phase, p.phase)}…"


def fetched(p: TrialProgress) -> str:
    """What the download phase did: a model kept from an earlier trial was not downloaded again."""
    new = max(0, p.bytes_done - p.bytes_present)
    if p.bytes_present and not new:
        return f"already on disk ({human_bytes(p.bytes_present)})"
    if p.bytes_present:
        return f"downloaded {human_bytes(new)} ({human_bytes(p.bytes_present)} were already on disk)"
    return f"downloaded {human_bytes(p.bytes_total)}"


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def bar(done: int, total: int, width: int) -> str:
    filled = round(share(done, total) * width)
    return "█" * filled + "░" * (width - filled)


def byte_pair(done: int, total: int) -> str:
    """`done/total UNIT`, both in the unit that suits the total (decimal, as human_bytes): `0.6/1.3 GB`."""
    scale, unit = 1, "B"
    for next_unit in ("KB", "MB", "GB", "TB"):
        if total < scale * 1000:
            break
        scale, unit = scale * 1000, next_unit
    digits = 0 if unit in ("B", "KB") else 1
    return f"{done / scale:.{digits}f}/{total / scale:.{digits}f} {unit}"


class ProgressPrinter:
    """Shows progress on `stream`: redrawn in place when it is a terminal, phase changes only when it is not."""

    def __init__(self, stream: TextIO, *, max_tokens: int | None = None, tty: bool | None = None,
                 width: Callable[[], int] = lambda: shutil.get_terminal_size().columns):
        self.stream = stream
        self.max_tokens = max_tokens
        self.tty = stream.isatty() if tty is None else tty
        self.width = width  # asked at each redraw: the terminal may be resized
        self._phase: str | None = None
        self._drawn = False

    def __call__(self, p: TrialProgress) -> None:
        if self.tty:
            self.stream.write("\r" + progress_line(p, self.width(), self.max_tokens) + CLEAR_TO_END)
            self._drawn = True
        elif p.phase != self._phase:
            self.stream.write(f"canrun: {phase_line(p)}\n")
        self._phase = p.phase
        self.stream.flush()

    def finish(self) -> None:
        """Erase the redrawn line, so that what follows starts on a clean line."""
        if self._drawn:
            self.stream.write("\r" + CLEAR_TO_END)
            self.stream.flush()
            self._drawn = False


def share(done: int, total: int) -> float:
    """done / total, kept within 0..1 (0 while the total is unknown)."""
    return 0.0 if total <= 0 else max(0.0, min(1.0, done / total))


def _fit(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"
