"""What this host offers a model's speed: its device, its memory bandwidth, and macOS's GPU memory limit.

On a Mac the chip comes from sysctl and its bandwidth from Apple's published table (bot.core.chips); elsewhere
(or for a chip the table lacks) a short probe with MLX measures it, and the store keeps the answer per device
and mlx version, so it runs once per host.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from dataclasses import dataclass

from bot.core import chips
from bot.services.host import device_label

log = logging.getLogger(__name__)

SYSCTL_NAMES = ("machdep.cpu.brand_string", "hw.memsize", "hw.ncpu", "iogpu.wired_limit_mb")
PROBE_BYTES = 256 * 1024**2
PROBE_REPEATS = 5
_probed: dict[str, float] = {}


@dataclass(frozen=True)
class HostBandwidth:
    device: str  # as a trial names it: "Apple M3 Max (Metal)", "AMD EPYC (CPU)"
    bandwidth_bps: float
    basis: str  # in words, for the answer
    probed: bool = False  # measured here by probe_bandwidth (it moves from run to run), not taken from the table


def mac_facts() -> dict[str, str]:
    """sysctl's answers for SYSCTL_NAMES; {} off macOS or when sysctl fails (names it lacks are left out)."""
    if platform.system() != "Darwin":
        return {}
    try:
        done = subprocess.run(["sysctl", *SYSCTL_NAMES], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.info("sysctl gave no answer: %s", e)
        return {}
    return chips.parse_sysctl(done.stdout)  # exits 1 when one name is unknown, having printed the others


def probe_bandwidth(nbytes: int = PROBE_BYTES, repeats: int = PROBE_REPEATS) -> float:
    """Bytes/s MLX's default device reads at: the best of a few sums over a large array (about 0.2 s)."""
    import mlx.core as mx

    a = mx.ones((nbytes // 4,), dtype=mx.float32)
    mx.eval(a)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        mx.eval(mx.sum(a))
        best = min(best, time.perf_counter() - started)
    del a
    return nbytes / best


def bandwidth_from_table(facts: dict[str, str], device: str) -> HostBandwidth | None:
    found = chips.chip_bandwidth(facts.get("machdep.cpu.brand_string", ""), chips.int_value(facts, "hw.ncpu"))
    if found is None:
        return None
    return HostBandwidth(device, found.gbps * 1e9, f"{found.chip}, {found.gbps:g} GB/s (Apple's specs)")


async def host_bandwidth(store=None) -> HostBandwidth:
    """The table's answer on a known Mac, else a probe (kept in the store per device and mlx version)."""
    import asyncio

    device = device_label()
    table = bandwidth_from_table(await asyncio.to_thread(mac_facts), device)
    if table is not None:
        return table
    key = f"bandwidth_probe:{device}:{_mlx_version()}"
    cached = await store.state_get(key) if store is not None else None
    if cached:
        bps = float(json.loads(cached)["bps"])
    else:
        if key not in _probed:  # once per process too: a CLI run without a store probes once
            _probed[key] = await asyncio.to_thread(probe_bandwidth)
        bps = _probed[key]
        if store is not None:
            await store.state_put(key, json.dumps({"bps": bps}))
    return HostBandwidth(device, bps, f"{device}, {bps / 1e9:.1f} GB/s (measured with mlx)", probed=True)


def _mlx_version() -> str:
    try:
        import mlx.core as mx

        return mx.__version__
    except Exception:  # noqa: BLE001
        return "unknown"
