"""Shared fixtures. The fakes (hub, GitHub, Discord) are real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os

import pytest

from bot.core.capabilities import CapabilityTable
from bot.core.engine import HostMemory
from bot.services.capability_probe import probe_capabilities

# No test may reach the real services, whatever the developer's shell has set.
for _var in ("HF_TOKEN", "GITHUB_TOKEN", "DISCORD_TOKEN", "HF_ENDPOINT", "CANRUN_GITHUB_API", "CANRUN_CONFIG"):
    os.environ.pop(_var, None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "0"

GIB = 1024**3


@pytest.fixture(scope="session")
def capability_table() -> CapabilityTable:
    """The real table of the installed mlx-lm (probed once per test run, in child processes)."""
    return asyncio.run(probe_capabilities())


@pytest.fixture
def host_16gb() -> HostMemory:
    return HostMemory(16 * GIB, "test budget")
