"""The capability table answers only for the mlx-lm and mlx it was probed with; helpers are never model types."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.core.capabilities import CapabilityTable, ModuleInfo
from bot.services.capabilities import load_capability_table, remember_capability_table, table_key
from bot.services.capability_probe import installed_mlx_lm_version, installed_mlx_version
from bot.services.environment import installed_fingerprint

ROOT = str(Path(__file__).resolve().parent.parent)


def marked_table(marker: str) -> CapabilityTable:
    return CapabilityTable(installed_mlx_lm_version(), {marker: ModuleInfo(marker, is_architecture=True)})


async def test_a_table_probed_with_another_mlx_is_not_used(store):
    # The same mlx-lm, probed when another mlx was installed: that table must not answer now.
    old = marked_table("from_old_mlx")
    here = installed_fingerprint()
    await store.capability_table_put(table_key(old.mlx_lm_version, "0.0.1", here), old.to_json())
    await remember_capability_table(store, marked_table("from_this_mlx"))
    table = await load_capability_table(store)
    assert set(table.modules) == {"from_this_mlx"}
    assert table_key("0.32.2", "0.32.4", here) != table_key("0.32.2", "0.33.0", here)
    assert installed_mlx_version() in table_key(installed_mlx_lm_version(), installed_mlx_version(), here)


async def test_a_table_probed_before_a_package_was_installed_is_not_used(store):
    # Probed when ai2-olmo (say) was missing; it has been installed since, so what imports may have changed.
    before = marked_table("before_the_install")
    await store.capability_table_put(table_key(before.mlx_lm_version, installed_mlx_version(), "another-set"),
                                     before.to_json())
    await remember_capability_table(store, marked_table("now"))
    assert set((await load_capability_table(store)).modules) == {"now"}


# The fingerprint of this interpreter's packages, with or without one more on its path.
FINGERPRINT = "from bot.services.environment import installed_fingerprint; print(installed_fingerprint())"


def test_installing_a_package_changes_the_fingerprint(tmp_path):
    def fingerprint(extra_path: str | None = None) -> str:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, extra_path) if p)}
        return subprocess.run([sys.executable, "-c", FINGERPRINT], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    before = fingerprint()
    info = tmp_path / "ai2_olmo-0.6.0.dist-info"  # what pip leaves in site-packages
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ai2-olmo\nVersion: 0.6.0\n")
    assert fingerprint(str(tmp_path)) != before and fingerprint() == before == installed_fingerprint()


def test_helper_modules_are_never_model_types(capability_table):
    rows = {r["model_type"]: r for r in capability_table.rows()}
    for helper in ("bitlinear_layers", "switch_layers", "cache", "base", "rope_utils", "activations"):
        assert helper not in rows
        info = capability_table.modules.get(helper)
        assert info is None or not info.is_architecture
    assert rows["llama"]["module"] == "llama" and rows["llama"]["loads"]


def test_a_remap_to_a_missing_module_names_no_module():
    table = CapabilityTable("9.9", {"llama": ModuleInfo("llama", True)}, model_remapping={"whisper": "whisper_x"})
    row = {r["model_type"]: r for r in table.rows()}["whisper"]
    assert row["module"] is None and not row["loads"] and "whisper_x does not exist" in row["needs"]


def test_an_unknown_model_type_has_no_module(capability_table, host_16gb):
    from bot.core.engine import decide
    from bot.core.metadata import RepoFile, RepoMetadata

    meta = RepoMetadata("org/asr", files=[RepoFile("config.json", 10), RepoFile("model.safetensors", 10),
                                          RepoFile("tokenizer.json", 10)], config={"model_type": "whisper"})
    v = decide(meta, capability_table, host_16gb)
    assert v.verdict == "unsupported_architecture" and v.model_type == "whisper" and v.module is None
    assert v.to_json()["module"] is None
