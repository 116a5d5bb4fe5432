"""What makes a tight or too-large model fit: a shorter context, a quantized or capped KV cache, a smaller
conversion, or (on macOS, when only Metal's limit is in the way) a higher GPU wired-memory limit.

Every answer is solved against the same need as the verdict's memory line (bot.core.memory.need_bytes) and the
model's own cache layout (bot.core.dry_load.kv_cache_bytes), so a fix that is offered makes the line say "fits".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bot.core import memory
from bot.core.chips import int_value
from bot.core.dry_load import kv_cache_bytes

MAX_CONTEXT = 1 << 24  # 16M tokens: "any length" for the answers here
MIB = 1024**2
GIB = 1024**3
# mlx-lm's QuantizedKVCache (group size 64) stores per group a 16-bit scale and bias beside the packed values.
KV_GROUP = 64


def kv_bits_scale(bits: int, element_bytes: int = 2) -> float:
    """Cache bytes with `--kv-bits bits` over the default cache's (16-bit elements)."""
    return (bits / 8 + 2 * 2 / KV_GROUP) / element_bytes


def largest_context(weights: int, layout: list[dict[str, Any]], target: int, kv_scale: float = 1.0) -> int:
    """The most tokens of context whose need stays within `target` bytes (0: not even one; MAX_CONTEXT: any)."""
    def need(tokens: int) -> int:
        return memory.need_bytes(weights, int(kv_cache_bytes(layout, tokens) * kv_scale))

    if need(1) > target:
        return 0
    if need(MAX_CONTEXT) <= target:
        return MAX_CONTEXT
    low, high = 1, MAX_CONTEXT  # need(low) fits, need(high) does not; the need grows with the context
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if need(mid) <= target else (low, mid)
    return low


@dataclass(frozen=True)
class MacLimits:
    """macOS's GPU memory facts: total RAM (hw.memsize) and iogpu.wired_limit_mb (0: the system's default)."""

    memsize: int
    wired_limit_mb: int | None

    @classmethod
    def from_sysctl(cls, facts: dict[str, str]) -> MacLimits | None:
        """From bot.core.chips.parse_sysctl's answer; None without hw.memsize (not a Mac, or sysctl failed)."""
        memsize = int_value(facts, "hw.memsize")
        if not memsize:
            return None
        return cls(memsize, int_value(facts, "iogpu.wired_limit_mb"))


def wired_limit_mb(need: int, mac: MacLimits, reserve: int | None = None) -> int | None:
    """The iogpu.wired_limit_mb that lets the GPU hold `need` bytes, rounded up to 1 GiB; None when that would
    leave the rest of the system less than `reserve` (default: 4 GiB or an eighth of RAM, the larger)."""
    reserve = reserve if reserve is not None else max(4 * GIB, mac.memsize // 8)
    limit = math.ceil(need / GIB) * GIB
    if limit > mac.memsize - reserve:
        return None
    return limit // MIB


def fixes(*, repo: str, weights: int, layout: list[dict[str, Any]], context_tokens: int, budget: int,
          fit_fraction: float, conversions: dict[str, int], mac: MacLimits | None = None) -> list[dict[str, Any]]:
    """The fixes for a model whose need at `context_tokens` is above `fit_fraction` of `budget`, best first.
    Each is {"kind", "text", ...numbers}; `text` marks commands as code spans."""
    target = int(budget * fit_fraction)
    need = memory.need_bytes(weights, kv_cache_bytes(layout, context_tokens))
    if need <= target:
        return []
    out: list[dict[str, Any]] = []
    default = largest_context(weights, layout, target)
    if default > 0:  # the weights fit: the cache is what a shorter context or a smaller cache saves
        out.append({"kind": "context", "tokens": default,
                    "text": f"Fits with the default cache {_up_to(default)} of context."})
        for bits in (8, 4):
            tokens = largest_context(weights, layout, target, kv_bits_scale(bits))
            if tokens > default:
                out.append({"kind": "kv_bits", "bits": bits, "tokens": tokens,
                            "text": f"With `--kv-bits {bits}` (quantized cache): {_up_to(tokens)}."})
        if default < MAX_CONTEXT:
            out.append({"kind": "max_kv_size", "tokens": default,
                        "text": f"`--max-kv-size {default}` keeps the cache at {default:,} tokens at any "
                                "length (the model then forgets the oldest tokens)."})
    for key in ("8bit", "4bit"):
        size = conversions.get(key)
        if size and memory.need_bytes(size, kv_cache_bytes(layout, context_tokens)) <= target:
            bits = key.removesuffix("bit")
            out.append({"kind": "conversion", "bits": int(bits), "bytes": size,
                        "text": f"As {bits}-bit it fits: `mlx_lm.convert --hf-path {repo} -q --q-bits {bits}`."})
            break
    if mac is not None:  # Metal's limit is in the way, perhaps not the RAM: a limit at which the need "fits"
        limit = wired_limit_mb(math.ceil(need / fit_fraction), mac)
        if limit is not None:
            now = f" (now {mac.wired_limit_mb} MB)" if mac.wired_limit_mb else " (now the system's default)"
            out.append({"kind": "wired_limit", "mb": limit,
                        "text": f"`sudo sysctl iogpu.wired_limit_mb={limit}` lets the GPU use {limit} MB{now}; "
                                "it is reset at reboot and leaves less memory for the rest of the system."})
    return out


def _up_to(n: int) -> str:
    return "at any length" if n >= MAX_CONTEXT else f"up to {n:,} tokens"
