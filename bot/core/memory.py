"""Gate 7: does the model fit this host's memory, as it is and as 8-bit / 4-bit conversions?

Sizes come from the weight files (what actually lands in memory), not the hub's parameter counts:
MLX packs 4-bit weights into U32, so "parameters" of a quantized repo are not bytes.
"""

from __future__ import annotations

from typing import Any

from bot.core.metadata import Tensor
from bot.core.verdicts import MemoryFit

# Beyond weights and KV cache: activations, the graph, the tokenizer, Python. Measured loads of small
# models on Apple silicon sit a few hundred MB above the weights.
WORKING_SPACE_BYTES = 512 * 1024**2
WORKING_SPACE_FRACTION = 0.05
# mlx_lm.convert's default group size 64 stores a bf16 scale and bias per group: 0.5 extra bits/weight.
CONVERSION_BITS = {"8bit": 8.5, "4bit": 4.5}
PACKED_DTYPES = {"U32", "I32"}


def kv_cache_bytes(config: dict[str, Any], context_tokens: int) -> int:
    """fp16 K and V for every layer at `context_tokens`. Unknown shapes count as zero."""
    cfg = config.get("text_config") or config
    layers = layer_count(config)
    heads = _first_int(cfg, "num_attention_heads", "n_heads", "n_head")
    kv_heads = _first_int(cfg, "num_key_value_heads", "n_kv_heads", "num_kv_heads") or heads
    hidden = _first_int(cfg, "hidden_size", "d_model", "n_embd")
    head_dim = _first_int(cfg, "head_dim") or (hidden // heads if hidden and heads else None)
    if not (layers and kv_heads and head_dim):
        return 0
    return 2 * layers * kv_heads * head_dim * context_tokens * 2


def layer_count(config: dict[str, Any]) -> int | None:
    """The model's transformer layers, under the names configs use (text_config first for VLMs)."""
    return _first_int(config.get("text_config") or config, "num_hidden_layers", "n_layers", "num_layers", "n_layer")


def _first_int(cfg: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def need_bytes(weights: int, kv_cache: int) -> int:
    return int(weights + kv_cache + WORKING_SPACE_BYTES + WORKING_SPACE_FRACTION * weights)


def fit(need: int, budget: int, fit_fraction: float) -> MemoryFit:
    """fits: within `fit_fraction` of the budget (room for the OS and other apps); tight: within it."""
    if need <= budget * fit_fraction:
        status = "fits"
    elif need <= budget:
        status = "tight"
    else:
        status = "too_large"
    return MemoryFit(need, budget, status)


def count_parameters(
    tensors: dict[str, Tensor] | None, hub_parameters: dict[str, int] | None, bits: int | None
) -> int | None:
    """Parameter count, undoing MLX/AWQ packing when the tensors are known.

    Packed integer weights hold 32/bits parameters per element; their scales, biases and zero points
    are bookkeeping, not parameters.
    """
    if tensors:
        total = 0
        packed = {n.rsplit(".", 1)[0] for n, t in tensors.items() if t.dtype in PACKED_DTYPES and bits}
        for name, t in tensors.items():
            prefix, _, leaf = name.rpartition(".")
            if prefix in packed and leaf in ("scales", "biases", "qzeros", "g_idx"):
                continue
            total += t.numel * (32 // bits if t.dtype in PACKED_DTYPES and bits else 1)
        return total
    if hub_parameters:
        return sum(hub_parameters.values())
    return None


def memory_report(
    *,
    weights_bytes: int | None,
    params: int | None,
    memory_factor: float,
    kv_cache: int,
    budget: int,
    fit_fraction: float,
) -> dict[str, MemoryFit]:
    """Fit at the repo's own precision and as 8-bit / 4-bit conversions (when smaller), estimated from the files."""
    return fit_report(
        as_is=int(weights_bytes * memory_factor) if weights_bytes is not None else None,
        conversions={key: int(params * bits / 8) for key, bits in CONVERSION_BITS.items()} if params else {},
        reference=weights_bytes, kv_cache=kv_cache, budget=budget, fit_fraction=fit_fraction,
    )


def fit_report(*, as_is: int | None, conversions: dict[str, int], reference: int | None, kv_cache: int,
               budget: int, fit_fraction: float) -> dict[str, MemoryFit]:
    """The fit of the model as it is and of each conversion ("8bit", "4bit": bytes), a conversion listed only
    when clearly smaller than `reference` (the repo as it is; None: always)."""
    report: dict[str, MemoryFit] = {}
    if as_is is not None:
        report["as_is"] = fit(need_bytes(as_is, kv_cache), budget, fit_fraction)
    for key, size in conversions.items():
        if reference is None or size < reference * 0.9:
            report[key] = fit(need_bytes(size, kv_cache), budget, fit_fraction)
    return report
