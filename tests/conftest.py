"""Shared fixtures. The fakes (hub, GitHub, Discord) are real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile

# Before anything imports huggingface_hub (it reads its environment once, at import): no stored
# token, no Xet transfers, and a throwaway cache instead of the developer's ~/.cache/huggingface.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="canrun-test-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest  # noqa: E402

from bot.core.capabilities import CapabilityTable  # noqa: E402
from bot.core.engine import HostMemory  # noqa: E402
from bot.services.capabilities import remember_capability_table  # noqa: E402
from bot.services import hub_client  # noqa: E402
from bot.services.capability_probe import probe_capabilities  # noqa: E402
from bot.services.store import Store  # noqa: E402

# As HubService does before its first request, and for the helpers that call huggingface_hub directly too: a thread
# left over from one test, failing to connect to its stopped fake hub, must not close the client under the next.
hub_client.install()

# No test may reach the real services, whatever the developer's shell has set.
for _var in ("HF_TOKEN", "GITHUB_TOKEN", "DISCORD_TOKEN", "HF_ENDPOINT", "CANRUN_GITHUB_API", "CANRUN_CONFIG"):
    os.environ.pop(_var, None)
os.environ.pop("HF_HUB_OFFLINE", None)
# Nor the developer's keychain: keyring's own switch, read by this process and every child (`canrun secrets`).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"

GIB = 1024**3


@pytest.fixture(scope="session")
def capability_table() -> CapabilityTable:
    """The real table of the installed mlx-lm (probed once per test run, in child processes)."""
    return asyncio.run(probe_capabilities())


@pytest.fixture
def keychain():
    """An empty in-memory keychain for this test (keyring's own switch; put back afterwards)."""
    import keyring

    from tests.fakes.keyring_backend import MemoryKeyring

    before, kr = keyring.get_keyring(), MemoryKeyring()
    keyring.set_keyring(kr)
    yield kr
    keyring.set_keyring(before)


@pytest.fixture
def host_16gb() -> HostMemory:
    return HostMemory(16 * GIB, "test budget")


@pytest.fixture(scope="session")
def zoo_hub():
    """The fake hub with every zoo repo (tests.fakes.hub_zoo), shared by the session: tests must not modify it."""
    from tests.fakes.hub import FakeHub
    from tests.fakes.hub_zoo import populate

    with FakeHub() as hub:
        populate(hub)
        yield hub


@pytest.fixture
def github():
    from tests.fakes.github import FakeGitHub

    with FakeGitHub() as gh:
        yield gh


@pytest.fixture
async def store(tmp_path):
    """A migrated store on a real file (WAL needs one), closed after the test."""
    s = await Store.open(tmp_path / "db.sqlite3")
    await s.migrate()
    yield s
    await s.close()


async def seed_store(path, table: CapabilityTable) -> None:
    """A database file, migrated, that already knows the installed mlx-lm's table (so no start probes again)."""
    s = await Store.open(path)
    await s.migrate()
    await remember_capability_table(s, table)
    await s.close()
