"""The memory budget a verdict is measured against, on the host the tests run on (MLX on the CPU)."""

from __future__ import annotations

import mlx.core as mx

from bot.services.host import device_label, gpu_memory, host_memory, physical_memory_bytes


def test_on_a_cpu_host_the_budget_is_the_ram_and_the_device_says_cpu():
    assert mx.default_device().type == mx.DeviceType.cpu  # mlx[cpu] on Linux
    assert gpu_memory() is None
    assert host_memory() == host_memory(0.0) and host_memory().source == "physical RAM"
    assert host_memory().budget_bytes == physical_memory_bytes() > 0
    assert device_label().endswith(" (CPU)")


def test_a_configured_budget_wins_in_decimal_gb():
    budget = host_memory(12.5)
    assert (budget.budget_bytes, budget.source) == (12_500_000_000, "configured budget")
