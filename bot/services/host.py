"""What this machine offers a model: the memory budget the verdict's fit is measured against."""

from __future__ import annotations

import os
import platform

from bot.core.engine import HostMemory
from bot.core.trial_policy import GB  # decimal, as every `*_gb` of the config and every size canrun prints


def machine_name() -> str:
    """How messages name the machine canrun runs on."""
    return "this Mac" if platform.system() == "Darwin" else "this machine"


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def host_memory(budget_gb: float = 0.0) -> HostMemory:
    """The configured budget, else Metal's recommended working set on macOS, else physical RAM."""
    if budget_gb > 0:
        return HostMemory(int(budget_gb * GB), "configured budget")
    if platform.system() == "Darwin":
        try:
            import mlx.core as mx

            size = mx.device_info().get("max_recommended_working_set_size")
            if size:
                return HostMemory(int(size), "GPU recommended working set")
        except Exception:  # noqa: BLE001 - fall back to RAM if mlx cannot answer
            pass
    return HostMemory(physical_memory_bytes(), "physical RAM")
