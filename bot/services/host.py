"""What this machine offers a model: the memory budget the verdict's fit is measured against."""

from __future__ import annotations

import os
import platform

from bot.core.engine import HostMemory
from bot.core.trial_policy import GB  # decimal, as every `*_gb` of the config and every size canrun prints

METAL_SOURCE = "GPU recommended working set"  # the budget Metal sets, which iogpu.wired_limit_mb raises


def machine_name() -> str:
    """How messages name the machine canrun runs on."""
    return "this Mac" if platform.system() == "Darwin" else "this machine"


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def host_memory(budget_gb: float = 0.0) -> HostMemory:
    """The configured budget, else what MLX's GPU may use (Metal's recommended working set on a Mac, the card's
    memory under CUDA), else physical RAM (MLX on the CPU)."""
    if budget_gb > 0:
        return HostMemory(int(budget_gb * GB), "configured budget")
    gpu = gpu_memory()
    return gpu if gpu is not None else HostMemory(physical_memory_bytes(), "physical RAM")


def gpu_memory() -> HostMemory | None:
    """The memory MLX's default GPU offers a model, or None when MLX runs on the CPU here (or is missing)."""
    try:
        import mlx.core as mx  # mlx.core alone: a fraction of a second, unlike mlx-lm

        if mx.default_device().type != mx.DeviceType.gpu:
            return None
        info = mx.device_info()
    except Exception:  # noqa: BLE001 - no answer from mlx: the caller falls back to RAM
        return None
    if info.get("max_recommended_working_set_size"):  # Metal: what macOS lets the GPU wire, below total RAM
        return HostMemory(int(info["max_recommended_working_set_size"]), METAL_SOURCE)
    if info.get("total_memory"):  # CUDA: the card's own memory bounds the model, not the host's RAM
        return HostMemory(int(info["total_memory"]), f"{info.get('device_name') or 'GPU'} memory")
    return None
