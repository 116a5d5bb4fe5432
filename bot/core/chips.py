"""Apple silicon's memory bandwidth by chip, and the macOS facts (sysctl output) it is looked up from.

Generating a token reads every active weight once, so a chip's memory bandwidth bounds tokens per second.
Numbers are Apple's published peak unified-memory bandwidth in GB/s (decimal), from Apple's tech specs pages
of the Macs that carry each chip (support.apple.com/specs) and the newsroom releases that introduced them
(e.g. "Apple unveils M5", Oct 2025: 153 GB/s; "Apple introduces M4 Pro and M4 Max", Oct 2024: 273 and
up to 546 GB/s). Where one chip name has two bins with different memory buses, the bin is told apart by its
CPU core count (`hw.ncpu`), as Apple's specs list them. A chip missing here (a newer one) gets no table
answer: the caller measures the bandwidth instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# chip -> GB/s, or {CPU cores: GB/s} for chips whose bins differ in bandwidth (the last entry is the default).
APPLE_BANDWIDTH_GBS: dict[str, float | dict[int, float]] = {
    "M1": 68.25, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": {14: 300, 16: 400}, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": {14: 410, 16: 546},
    "M5": 153,
}

_CHIP = re.compile(r"\bM(\d+)(?:\s+(Pro|Max|Ultra))?\b")


@dataclass(frozen=True)
class ChipBandwidth:
    chip: str  # "M3 Max"
    gbps: float
    binned_by_cores: bool = False  # the bin came from the CPU core count


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl name ...` output ("name: value" per line) -> {name: value}. Unknown names print nothing."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


def chip_name(brand: str) -> str | None:
    """"Apple M3 Max" (machdep.cpu.brand_string) -> "M3 Max"; None for anything not Apple silicon."""
    if "Apple" not in brand:
        return None
    match = _CHIP.search(brand)
    return f"M{match[1]}" + (f" {match[2]}" if match[2] else "") if match else None


def chip_bandwidth(brand: str, cpu_cores: int | None = None) -> ChipBandwidth | None:
    chip = chip_name(brand)
    entry = APPLE_BANDWIDTH_GBS.get(chip or "")
    if chip is None or entry is None:
        return None
    if isinstance(entry, dict):
        if cpu_cores in entry:
            return ChipBandwidth(chip, float(entry[cpu_cores]), binned_by_cores=True)
        return ChipBandwidth(chip, float(list(entry.values())[-1]))  # the full chip: an upper bound
    return ChipBandwidth(chip, float(entry))


def int_value(facts: dict[str, str], name: str) -> int | None:
    try:
        return int(facts[name])
    except (KeyError, ValueError):
        return None
