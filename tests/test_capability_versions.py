"""The capability table answers only for the mlx-lm and mlx it was probed with; helpers are never model types."""

from __future__ import annotations

from bot.core.capabilities import CapabilityTable, ModuleInfo
from bot.services.capabilities import load_capability_table, remember_capability_table, table_key
from bot.services.capability_probe import installed_mlx_lm_version, installed_mlx_version


def marked_table(marker: str) -> CapabilityTable:
    return CapabilityTable(installed_mlx_lm_version(), {marker: ModuleInfo(marker, is_architecture=True)})


async def test_a_table_probed_with_another_mlx_is_not_used(store):
    # The same mlx-lm, probed when another mlx was installed: that table must not answer now.
    old = marked_table("from_old_mlx")
    await store.capability_table_put(table_key(old.mlx_lm_version, "0.0.1"), old.to_json())
    await remember_capability_table(store, marked_table("from_this_mlx"))
    table = await load_capability_table(store)
    assert set(table.modules) == {"from_this_mlx"}
    assert table_key("0.32.2", "0.32.4") != table_key("0.32.2", "0.33.0")
    assert installed_mlx_version() in table_key(installed_mlx_lm_version(), installed_mlx_version())


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
