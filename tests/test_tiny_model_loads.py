"""The installed mlx-lm loads, or refuses, the tiny checkpoints of tests/fakes/tiny_model.py on CPU.

These pin the mlx-lm behaviour that canrun's verdicts rest on, through the real `mlx_lm.load` of a local folder.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import huggingface_hub.constants  # noqa: E402
import mlx_lm  # noqa: E402
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx_lm.utils import get_total_parameters  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from tests.fakes.tiny_model import (  # noqa: E402
    Files,
    build_tokenizer_files,
    params_of,
    tiny_awq_files,
    tiny_bnb_files,
    tiny_llama_files,
    write_model,
)


@pytest.fixture(autouse=True)
def offline_and_unattended(monkeypatch: pytest.MonkeyPatch) -> None:
    # A local folder needs no network; if anything tries, it must fail, not wait.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    # Any interactive prompt (e.g. a trust_remote_code question) reads end-of-file instead of hanging.
    monkeypatch.setattr(sys, "stdin", io.StringIO())


def load(tmp_path: Path, files: Files):
    return mlx_lm.load(str(write_model(tmp_path / "model", files)))


def generated_tokens(model, tokenizer, max_tokens: int = 4) -> int:
    *_, last = mlx_lm.stream_generate(model, tokenizer, "hello world", max_tokens=max_tokens)
    return last.generation_tokens


def with_config(files: Files, **changes) -> Files:
    return {**files, "config.json": json.dumps({**json.loads(files["config.json"]), **changes}).encode()}


def test_tokenizer_files_load_in_transformers(tmp_path: Path) -> None:
    build_tokenizer_files(tmp_path, vocab_size=256)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer) == 256
    ids = tokenizer("the quick brown fox")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the quick brown fox"


def test_bf16_llama_loads_and_generates(tmp_path: Path) -> None:
    files = tiny_llama_files()
    model, tokenizer = load(tmp_path, files)

    assert model.model.embed_tokens.weight.dtype == mx.bfloat16
    assert get_total_parameters(model) == params_of(files)
    assert isinstance(mlx_lm.generate(model, tokenizer, "hello", max_tokens=4), str)
    assert generated_tokens(model, tokenizer) == 4


def test_mlx_4bit_llama_loads_and_generates(tmp_path: Path) -> None:
    files = tiny_llama_files(quantize_bits=4)
    model, tokenizer = load(tmp_path, files)

    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, nn.QuantizedLinear) and q_proj.bits == 4
    assert get_total_parameters(model) == params_of(files)
    assert generated_tokens(model, tokenizer) == 4


def test_awq_layout_loads_and_dequantizes_to_its_float_twin(tmp_path: Path) -> None:
    model, tokenizer = load(tmp_path / "awq", tiny_awq_files("awq", group_size=32))
    twin, _ = load(tmp_path / "fp16", tiny_llama_files(dtype="float16"))

    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, nn.QuantizedLinear) and (q_proj.bits, q_proj.group_size) == (4, 32)
    # Proves the fake's packing is AutoAWQ's: a wrong nibble order would be off by many scales.
    restored = mx.dequantize(q_proj.weight, q_proj.scales, q_proj.biases, q_proj.group_size, q_proj.bits)
    error = mx.abs(restored - twin.model.layers[0].self_attn.q_proj.weight).max().item()
    assert error <= q_proj.scales.max().item()
    assert generated_tokens(model, tokenizer) == 4


def test_gptq_layout_fails_where_awq_loads(tmp_path: Path) -> None:
    # mlx-lm reads GPTQ's qweight [in/8, out] as AWQ's [in, out/8], so it infers 0 bits per weight.
    with pytest.raises(ValueError, match=r"requested number of bits 0 is not supported"):
        load(tmp_path, tiny_awq_files("gptq"))


def test_g_idx_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"non-contiguous group indices \(g_idx\) are not currently supported"):
        load(tmp_path, tiny_awq_files("gptq", with_g_idx=True))


def test_model_file_needs_trust_remote_code(tmp_path: Path) -> None:
    files = with_config(tiny_llama_files(), model_file="modeling_tiny.py")
    files["modeling_tiny.py"] = b"raise RuntimeError('remote code ran')\n"  # would show if it were executed
    with pytest.raises(ValueError, match=r"custom module \('modeling_tiny.py'\).*Pass trust_remote_code=True"):
        load(tmp_path, files)


def test_pytorch_bin_only_is_not_found(tmp_path: Path) -> None:
    files = {k: v for k, v in tiny_llama_files().items() if k != "model.safetensors"}
    files["pytorch_model.bin"] = b"not read: mlx-lm only looks for model*.safetensors"
    with pytest.raises(FileNotFoundError, match=r"No safetensors found"):
        load(tmp_path, files)


def test_bitsandbytes_tensors_are_refused(tmp_path: Path) -> None:
    # mlx-lm has no bitsandbytes branch: the tensors load as plain weights and the extras are rejected.
    with pytest.raises(ValueError, match=r"parameters not in model:[\s\S]*\.weight\.absmax"):
        load(tmp_path, tiny_bnb_files())
