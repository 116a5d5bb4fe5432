"""What this machine offers a model: the memory budget the verdict's fit is measured against."""

from __future__ import annotations

import os
import platform

from bot.core.engine import HostMemory


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def host_memory(budget_gb: float = 0.0) -> HostMemory:
    """The configured budget, else Metal's recommended working set on macOS, else physical RAM."""
    if budget_gb > 0:
        return HostMemory(int(budget_gb * 1024**3), "configured budget")
    if platform.system() == "Darwin":
        try:
            import mlx.core as mx

            size = mx.device_info().get("max_recommended_working_set_size")
            if size:
                return HostMemory(int(size), "GPU recommended working set")
        except Exception:  # noqa: BLE001 - fall back to RAM if mlx cannot answer
            pass
    return HostMemory(physical_memory_bytes(), "physical RAM")
