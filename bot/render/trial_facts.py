"""A finished trial's numbers in words, written once for the terminal (`canrun trial`) and Discord's trial embed."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from bot.core.speed import decode_tps
from bot.core.units import human_bytes


def trial_numbers(result: dict[str, Any], *, detail: bool = False) -> list[str]:
    """The measured numbers (those known); `detail` (the terminal) adds the token counts and a finer load time.
    Generation is the decode rate (bot.core.speed.decode_tps), the figure the speed estimate is compared with."""
    r = result
    tokens = (lambda key: f" ({r.get(key, '?')} tokens)") if detail else (lambda key: "")
    decoded = decode_tps(r)
    numbers = [
        f"load {r['load_seconds']:.{2 if detail else 1}f} s" if r.get("load_seconds") is not None else None,
        f"prompt {r['prompt_tps']:.1f} tok/s{tokens('prompt_tokens')}" if r.get("prompt_tps") else None,
        f"generation {decoded:.1f} tok/s{tokens('generation_tokens')}" if decoded else None,
        f"peak memory {human_bytes(r['peak_memory_bytes'])}" if r.get("peak_memory_bytes") else None,
    ]
    return [n for n in numbers if n]


def machine_line(result: dict[str, Any], device: Callable[[str], str] = str) -> str:
    """Where it ran: the device (through `device`, e.g. an escaper) and the mlx and mlx-lm versions."""
    r = result
    return f"{device(str(r.get('device', '?')))} · mlx {r.get('mlx_version', '?')} · mlx-lm {r.get('mlx_lm_version', '?')}"
