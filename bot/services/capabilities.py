"""The capability table for the installed mlx-lm: from the store when this version was probed before."""

from __future__ import annotations

import logging

from bot.core.capabilities import CapabilityTable
from bot.services.capability_probe import installed_mlx_lm_version, probe_capabilities
from bot.services.store import Store

log = logging.getLogger(__name__)


async def load_capability_table(store: Store | None, *, reprobe: bool = False) -> CapabilityTable:
    version = installed_mlx_lm_version()
    if store is not None and not reprobe:
        cached = await store.capability_table_get(version)
        if cached is not None:
            return CapabilityTable.from_json(cached)
    log.info("probing the model modules of mlx-lm %s", version)
    table = await probe_capabilities()
    if store is not None:
        await store.capability_table_put(table.mlx_lm_version, table.to_json())
    return table
