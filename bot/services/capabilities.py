"""The capability table for the installed mlx-lm: from the store when this pair of versions was probed before.

Keyed by mlx-lm's and mlx's versions together: upgrading either can change what imports (a module may need a
newer mlx), so either upgrade probes again; and by the other installed packages (bot.services.environment): once
the package a module needs is installed (`ai2-olmo` for olmo), the next start probes again too.
"""

from __future__ import annotations

import logging

from bot.core.capabilities import CapabilityTable
from bot.services.capability_probe import installed_mlx_lm_version, installed_mlx_version, probe_capabilities
from bot.services.environment import installed_fingerprint
from bot.services.store import Store

log = logging.getLogger(__name__)


async def load_capability_table(store: Store | None, *, reprobe: bool = False) -> CapabilityTable:
    version = installed_mlx_lm_version()
    key = table_key(version, installed_mlx_version(), installed_fingerprint())
    if store is not None and not reprobe:
        cached = await store.capability_table_get(key)
        if cached is not None:
            return CapabilityTable.from_json(cached)
    log.info("probing the model modules of mlx-lm %s", version)
    table = await probe_capabilities()
    if store is not None:
        await remember_capability_table(store, table)
    return table


async def remember_capability_table(store: Store, table: CapabilityTable) -> None:
    """Keep a probed table for the next start of this mlx-lm with this mlx."""
    await store.capability_table_put(table_key(table.mlx_lm_version, installed_mlx_version(), installed_fingerprint()),
                                     table.to_json())


def table_key(mlx_lm_version: str, mlx_version: str, environment: str) -> str:
    return f"mlx-lm {mlx_lm_version} / mlx {mlx_version} / packages {environment}"
