"""Ground truth: for real tiny checkpoints, canrun's verdict (from metadata over HTTP) agrees with what
the real `mlx_lm.load()` does with the same files on disk."""

from __future__ import annotations

import io
import json
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
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import tiny_awq_files, tiny_bnb_files, tiny_llama_files, write_model


def with_config(files, **changes):
    return {**files, "config.json": json.dumps({**json.loads(files["config.json"]), **changes}).encode()}


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
}


@pytest.mark.parametrize("name", list(CASES))
async def test_verdict_agrees_with_a_real_load(name, tmp_path, capability_table, monkeypatch):
    build, expected = CASES[name]
    files = build()

    with FakeHub() as hub:
        hub.add_repo(FakeRepo(f"tiny/{name}", dict(files)))
        hub_service = HubService(HubSettings(endpoint=hub.endpoint, download_dir=tmp_path / "hub"))
        dry = DryLoadService(hub_service, shared_prober(), DryLoadSettings(work_dir=tmp_path / "dry"))
        checker = Checker(hub_service, capability_table, HostMemory(8 * 1024**3, "test"), EngineSettings(), dry_load=dry)
        verdict = await checker.check(RepoRef(f"tiny/{name}"))
        await checker.close()
    assert verdict.verdict == expected, verdict.reasons

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    try:
        mlx_lm.load(str(write_model(tmp_path / "model", files)))
        loaded, error = True, None
    except Exception as e:  # noqa: BLE001 - any failure of load() is what the verdict predicts
        loaded, error = False, e
    assert loaded == (verdict.verdict == "loads"), f"verdict {verdict.verdict} but load() said {error!r}"
