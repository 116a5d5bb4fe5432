"""Numbers people read: bytes, parameter counts."""

from __future__ import annotations


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") or value >= 100 else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_params(n: int | None) -> str:
    if not n:
        return "unknown"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value >= 100 else f"{value:.1f}{unit}".replace(".0" + unit, unit)
    return str(n)


FIT_WORDS = {"fits": "fits", "tight": "tight", "too_large": "too large"}
MEMORY_LABELS = {"as_is": "as is", "8bit": "as 8-bit", "4bit": "as 4-bit"}
