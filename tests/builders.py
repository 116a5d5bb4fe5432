"""Small builders of RepoMetadata for the pure verdict tests."""

from __future__ import annotations

from typing import Any

from bot.core.metadata import RepoFile, RepoMetadata, Tensor

GB = 10**9

LLAMA_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
}


def meta(
    config: dict[str, Any] | None = None,
    files: dict[str, int] | None = None,
    *,
    tokenizer_config: dict[str, Any] | None = None,
    hf_quant_config: dict[str, Any] | None = None,
    tensors: dict[str, tuple[str, tuple[int, ...]]] | None = None,
    hub_parameters: dict[str, int] | None = None,
    repo_id: str = "org/model",
) -> RepoMetadata:
    if files is None:
        files = {"config.json": 700, "model.safetensors": 16 * GB, "tokenizer.json": 9_000_000}
    return RepoMetadata(
        repo_id=repo_id,
        sha="0" * 40,
        files=[RepoFile(p, s) for p, s in files.items()],
        config=config,
        tokenizer_config=tokenizer_config,
        hf_quant_config=hf_quant_config,
        tensors={k: Tensor(d, tuple(s)) for k, (d, s) in tensors.items()} if tensors is not None else None,
        hub_parameters=hub_parameters,
    )


def config(**overrides: Any) -> dict[str, Any]:
    c = dict(LLAMA_CONFIG)
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}
