"""This machine as canrun sees it (bot/core/host_model.py): the facts gathered here, from MLX and the OS."""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

from bot.core.engine import HostMemory
from bot.core.host_model import CPU, METAL_SOURCE, Host, describe_host

__all__ = ["METAL_SOURCE", "device_label", "gpu_memory", "host_memory", "machine_name", "physical_memory_bytes",
           "this_host"]


def this_host(budget_gb: float = 0.0) -> Host:
    """The host model: kind, device, memory budget (`budget_gb` > 0 wins) and its name in messages."""
    gpu_info, cpu_name = _mlx_facts()
    return describe_host(platform.system(), gpu_info, physical_memory_bytes(), budget_gb, cpu_name)


def machine_name() -> str:
    """How messages name the machine canrun runs on: "this Mac", "this machine's GPU (NVIDIA H200)", ..."""
    return this_host().name


def device_label() -> str:
    """This host's device as trials record it: "Apple M3 Max (Metal)", "NVIDIA H200 (CUDA)", "x86_64 (CPU)"."""
    return this_host().device_label


def host_memory(budget_gb: float = 0.0) -> HostMemory:
    """The configured budget, else what MLX's GPU may use (Metal's recommended working set on a Mac, the card's
    memory under CUDA), else physical RAM (MLX on the CPU)."""
    return this_host(budget_gb).memory


def gpu_memory() -> HostMemory | None:
    """The memory MLX's default GPU offers a model, or None when MLX runs on the CPU here (or is missing)."""
    host = this_host()
    return None if host.kind == CPU else host.memory


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


@functools.lru_cache(maxsize=1)
def _mlx_facts() -> tuple[dict[str, Any] | None, str]:
    """MLX's device_info() when its default device is a GPU (else None), and the CPU's name. Asked once: the
    devices do not change while canrun runs."""
    try:
        import mlx.core as mx  # mlx.core alone: a fraction of a second, unlike mlx-lm

        info = dict(mx.device_info())
        if mx.default_device().type != mx.DeviceType.gpu:
            return None, str(info.get("device_name") or platform.machine())
        return info, ""
    except Exception:  # noqa: BLE001 - no answer from mlx: a CPU host, its budget the RAM
        return None, platform.machine()
