"""Ground truth: for real tiny checkpoints, canrun's verdict (from metadata over HTTP) agrees with what
the real `mlx_lm.load()` does with the same files on disk. Every repo that gets past the gates that must
never reach a load is decided by the dry load (the installed mlx-lm's own code on headers only)."""

from __future__ import annotations

import io
import sys

import huggingface_hub.constants
import mlx_lm
import pytest

from bot.core.engine import EngineSettings, HostMemory
from bot.core.repo_id import RepoRef
from bot.services.checker import Checker
from bot.services.dry_load import DryLoadService, DryLoadSettings
from bot.services.hub import HubService, HubSettings
from bot.services.prober import shared_prober
from bot.services.speed import SpeedService
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import (
    code_only_tokenizer,
    tiny_awq_files,
    tiny_bnb_files,
    tiny_compressed_tensors_files,
    tiny_deepseek_v3_fp8_files,
    tiny_llama_files,
    tiny_llama_fp8_files,
    tiny_mixtral_files,
    with_config,
    with_tensor_shape,
    without_tensor,
    write_model,
)


def bin_only(files):
    out = {k: v for k, v in files.items() if k != "model.safetensors"}
    out["pytorch_model.bin"] = b"\x80\x02}q\x00."  # a pickle: never loaded by either side
    return out


CASES = {
    "bf16": (lambda: tiny_llama_files(), "loads"),
    "mlx-4bit": (lambda: tiny_llama_files(quantize_bits=4), "loads"),
    "awq": (lambda: tiny_awq_files("awq"), "loads"),
    "gptq-layout": (lambda: tiny_awq_files("gptq"), "unsupported_quantization"),
    "gptq-g_idx": (lambda: tiny_awq_files("gptq", with_g_idx=True), "unsupported_quantization"),
    "bitsandbytes": (lambda: tiny_bnb_files(), "unsupported_quantization"),
    "model_file": (lambda: with_config(tiny_llama_files(), model_file="modeling_tiny.py"), "remote_code"),
    "bin-only": (lambda: bin_only(tiny_llama_files()), "unsupported_weights"),
    "unknown-arch": (lambda: with_config(tiny_llama_files(), model_type="llama9000"), "unsupported_architecture"),
    # sanitize renames and stacks Hugging Face's per-expert tensors
    "mixtral-experts": (lambda: tiny_mixtral_files(), "loads"),
    "missing-tensor": (lambda: without_tensor(tiny_llama_files(), "model.layers.1.mlp.up_proj.weight"),
                       "unsupported_weights"),
    "wrong-shape": (lambda: with_tensor_shape(tiny_llama_files(), "model.norm.weight", (32,)), "unsupported_weights"),
    "tokenizer-code": (lambda: code_only_tokenizer(tiny_llama_files()), "remote_code"),
    # fp8 blocks: deepseek_v3's sanitize dequantizes them, llama's does not
    "deepseek_v3-fp8": (lambda: tiny_deepseek_v3_fp8_files(), "loads"),
    "llama-fp8": (lambda: tiny_llama_fp8_files(), "unsupported_quantization"),
    # a format mlx-lm 0.32 names but cannot load (the static gates say it loads)
    "compressed-tensors": (lambda: tiny_compressed_tensors_files(), "unsupported_quantization"),
    "sharded": (lambda: tiny_llama_files(layers=3, shards=3), "loads"),
}
# Decided by the static gates alone: what they refuse never reaches a load (repo code, or nothing to load). A
# tokenizer named in auto_map does reach it: transformers, without trust_remote_code, refuses in its own words.
STATIC_ONLY = {"bin-only", "model_file"}


async def canrun_check(hub, repo_id, tmp_path, capability_table, *, dry_load=True, prober=None, speed=False):
    """`canrun check` over HTTP against the fake hub: with the dry load (on `prober`, else the shared one) or
    with the static gates alone; with `speed`, a speed estimate (no store: no trials)."""
    hub_service = HubService(HubSettings(endpoint=hub.endpoint, download_dir=tmp_path / "hub"))
    dry = None
    if dry_load:
        dry = DryLoadService(hub_service, prober or shared_prober(), DryLoadSettings(work_dir=tmp_path / "dry"))
    checker = Checker(hub_service, capability_table, HostMemory(8 * 1024**3, "test"), EngineSettings(), dry_load=dry,
                      speed=SpeedService() if speed else None)
    try:
        return await checker.check(RepoRef(repo_id))
    finally:
        await checker.close()


@pytest.mark.parametrize("name", list(CASES))
async def test_verdict_agrees_with_a_real_load(name, tmp_path, capability_table, monkeypatch):
    build, expected = CASES[name]
    files = build()

    with FakeHub() as hub:
        hub.add_repo(FakeRepo(f"tiny/{name}", dict(files)))
        verdict = await canrun_check(hub, f"tiny/{name}", tmp_path, capability_table)
        code_fetched = [r.path for r in hub.requests if r.path.endswith(".py")]
    assert verdict.verdict == expected, verdict.reasons
    assert verdict.checked_by == ("static" if name in STATIC_ONLY else "dry_load"), verdict.reasons
    assert not code_fetched, "canrun never downloads a repo's code"

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    try:
        mlx_lm.load(str(write_model(tmp_path / "model", files)))
        loaded, error = True, None
    except Exception as e:  # noqa: BLE001 - any failure of load() is what the verdict predicts
        loaded, error = False, e
    assert loaded == (verdict.verdict == "loads"), f"verdict {verdict.verdict} but load() said {error!r}"


async def test_the_dry_load_wins_where_the_static_gates_disagree(tmp_path, capability_table):
    """compressed-tensors `pack-quantized` is a format the static gates accept; mlx-lm 0.32's load refuses
    its tensors (`weight_packed`, `weight_scale`, `weight_shape`). The verdict is mlx-lm's, in its words."""
    with FakeHub() as hub:
        hub.add_repo(FakeRepo("tiny/ct", tiny_compressed_tensors_files()))
        static = await canrun_check(hub, "tiny/ct", tmp_path / "static", capability_table, dry_load=False)
        verdict = await canrun_check(hub, "tiny/ct", tmp_path / "dry", capability_table)
    assert (static.verdict, static.checked_by) == ("loads", "static"), static.reasons
    assert (verdict.verdict, verdict.checked_by) == ("unsupported_quantization", "dry_load"), verdict.reasons
    assert verdict.reasons[0].startswith(f"mlx-lm {verdict.mlx_lm_version} (load())"), verdict.reasons
    assert "weight_packed" in verdict.reasons[0], verdict.reasons
    assert not any("loads" in r for r in verdict.reasons), "no static 'it loads' is left to contradict it"
