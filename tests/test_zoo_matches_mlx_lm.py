"""Every repo of the fake hub's zoo: `canrun check`'s verdict agrees with what the installed mlx-lm does.

The reference is mlx-lm itself, run here in the test's process on the repo's files as they are on the
hub (weights as sparse zeros behind their real headers): `load_model(lazy=True)` then `load_tokenizer`,
which is `mlx_lm.load()` without its final evaluation of the weights. canrun's answer comes the other
way: over HTTP from the fake hub, through the static gates and the dry-load process.
"""

from __future__ import annotations

import io
import json
import sys

import huggingface_hub.constants
import pytest
from mlx_lm.utils import load_model, load_tokenizer

from bot.core.engine import EngineSettings, HostMemory
from bot.core.repo_id import RepoRef
from bot.services.checker import Checker
from bot.services.dry_load import DryLoadService, DryLoadSettings
from bot.services.hub import HubService, HubSettings
from bot.services.prober import shared_prober
from tests.fakes.hub import FakeFile
from tests.fakes.hub_zoo import verdict_cases

NEVER_LOADED = {"gated", "not_found"}


def lay_out(repo, dest):
    """The repo's root files on disk; a FakeFile's bytes past its content become a sparse hole."""
    dest.mkdir()
    for name, value in repo.files.items():
        if "/" in name or name.endswith(".py"):
            continue
        path = dest / name
        if isinstance(value, FakeFile):
            with open(path, "wb") as f:
                f.write(value.content)
                f.truncate(value.size or len(value.content))
        elif isinstance(value, dict):
            path.write_text(json.dumps(value))
        else:
            path.write_bytes(value.encode() if isinstance(value, str) else value)
    return dest


def mlx_lm_loads(path) -> tuple[bool, str]:
    try:
        _, config = load_model(path, lazy=True)
        load_tokenizer(path)
        return True, ""
    except BaseException as e:  # noqa: BLE001 - SystemExit included: a module may end the process on import
        return False, f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("entry", [e for e in verdict_cases() if e.verdict not in NEVER_LOADED],
                         ids=lambda e: e.repo.repo_id)
async def test_zoo_verdict_agrees_with_mlx_lm(entry, zoo_hub, capability_table, tmp_path, monkeypatch):
    hub = HubService(HubSettings(endpoint=zoo_hub.endpoint, download_dir=tmp_path / "hub"))
    dry = DryLoadService(hub, shared_prober(), DryLoadSettings(work_dir=tmp_path / "dry"))
    checker = Checker(hub, capability_table, HostMemory(64 * 10**9, "test"), EngineSettings(), dry_load=dry)
    verdict = await checker.check(RepoRef(entry.repo.repo_id))
    await checker.close()
    assert verdict.verdict == entry.verdict, verdict.reasons

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    loaded, error = mlx_lm_loads(lay_out(entry.repo, tmp_path / "model"))
    assert loaded == (verdict.verdict == "loads"), f"canrun: {verdict.verdict}; mlx-lm: {error}"
    if verdict.checked_by == "dry_load" and not loaded:
        assert verdict.reasons[0].startswith(f"mlx-lm {verdict.mlx_lm_version}"), verdict.reasons
