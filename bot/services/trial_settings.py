"""The owner's `[trials]` configuration, as the trial policy and the worker's runner take it.

Shared by the bot's queue and `canrun trial`, so both refuse and stop trials by the same numbers.
"""

from __future__ import annotations

from bot.config import Config
from bot.core.engine import HostMemory
from bot.core.trial_policy import GB, TrialLimitsPolicy
from bot.services.host import machine_name
from bot.services.trial_runner import TrialLimits


def trial_policy(config: Config, host: HostMemory) -> TrialLimitsPolicy:
    cfg = config.trials
    return TrialLimitsPolicy(
        max_download_bytes=int(cfg.max_download_gb * GB),
        max_memory_bytes=int(cfg.max_memory_fraction * host.budget_bytes),
        min_free_disk_bytes=int(cfg.min_free_disk_gb * GB),
        machine=machine_name(),
    )


def trial_limits(config: Config) -> TrialLimits:
    cfg = config.trials
    return TrialLimits(cfg.download_timeout_seconds, cfg.load_timeout_seconds, cfg.generate_timeout_seconds,
                       max_download_bytes=int(cfg.max_download_gb * GB),
                       min_free_disk_bytes=int(cfg.min_free_disk_gb * GB))
