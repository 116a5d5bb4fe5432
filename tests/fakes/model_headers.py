"""Safetensors headers shaped like real checkpoints, for the zoo: names, dtypes and shapes of a model.

The parameter tree comes from the installed mlx-lm's own model class, built lazily (nothing is
allocated), so a "7B" repo's headers name every tensor a real checkpoint has. Helpers then rewrite a
tree into the layouts other tools publish (MLX quantized, AutoAWQ, compressed-tensors, ...).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.utils import _get_classes

Tensors = dict[str, tuple[str, list[int]]]
DTYPES = {mx.bfloat16: "BF16", mx.float16: "F16", mx.float32: "F32", mx.uint32: "U32", mx.int32: "I32"}


def _model(config: dict):
    model_class, args_class = _get_classes(config)
    return model_class(args_class.from_dict(config))


def _flatten(model, dtype: str) -> Tensors:
    out: Tensors = {}
    for name, value in tree_flatten(model.parameters()):
        kind = DTYPES.get(value.dtype, dtype)
        out[name] = (dtype if kind in ("F32", "BF16", "F16") else kind, list(value.shape))
    return out


def dense(config: dict, dtype: str = "BF16") -> Tensors:
    """The checkpoint of an unquantized model, as transformers saves it (same names as mlx-lm for llama-likes)."""
    return _flatten(_model(config), dtype)


def mlx_quantized(config: dict, bits: int = 4, group_size: int = 64) -> Tensors:
    """What `mlx_lm.convert -q` writes: packed U32 weights with bf16 scales and biases."""
    model = _model(config)
    nn.quantize(model, group_size=group_size, bits=bits,
                class_predicate=lambda p, m: hasattr(m, "to_quantized") and m.weight.shape[-1] % group_size == 0)
    return _flatten(model, "BF16")


def linear_weights(tensors: Tensors) -> list[str]:
    """Prefixes of the 2-D projection weights inside the decoder layers (what quantizers pack)."""
    return [n.removesuffix(".weight") for n, (_, s) in tensors.items()
            if n.endswith("_proj.weight") and len(s) == 2 and ".layers." in n]


def awq(config: dict, group_size: int = 128) -> Tensors:
    """AutoAWQ's GEMM layout: qweight [in, out/8] and qzeros [in/g, out/8] as I32, scales [in/g, out] F16."""
    tensors = dense(config, "F16")
    for prefix in linear_weights(tensors):
        out_features, in_features = tensors.pop(f"{prefix}.weight")[1]
        tensors[f"{prefix}.qweight"] = ("I32", [in_features, out_features // 8])
        tensors[f"{prefix}.qzeros"] = ("I32", [in_features // group_size, out_features // 8])
        tensors[f"{prefix}.scales"] = ("F16", [in_features // group_size, out_features])
    return tensors


def compressed_pack_quantized(config: dict, group_size: int = 128) -> Tensors:
    """compressed-tensors' pack-quantized int4: weight_packed [out, in/8] I32, weight_scale, weight_shape."""
    tensors = dense(config)
    for prefix in linear_weights(tensors):
        out_features, in_features = tensors.pop(f"{prefix}.weight")[1]
        tensors[f"{prefix}.weight_packed"] = ("I32", [out_features, in_features // 8])
        tensors[f"{prefix}.weight_scale"] = ("BF16", [out_features, in_features // group_size])
        tensors[f"{prefix}.weight_shape"] = ("I64", [2])
    return tensors


def fp8_blocks(config: dict, block: int = 128) -> Tensors:
    """A block-scaled fp8 checkpoint (DeepSeek's format): F8_E4M3 weights and F32 weight_scale_inv per block."""
    tensors = dense(config)
    for prefix in linear_weights(tensors):
        out_features, in_features = tensors[f"{prefix}.weight"][1]
        tensors[f"{prefix}.weight"] = ("F8_E4M3", [out_features, in_features])
        tensors[f"{prefix}.weight_scale_inv"] = ("F32", [math.ceil(out_features / block), math.ceil(in_features / block)])
    return tensors


def bitsandbytes_nf4(config: dict) -> Tensors:
    """bitsandbytes 4-bit: U8 weights holding two values a byte, plus absmax and quant_map per layer."""
    tensors = dense(config)
    for prefix in linear_weights(tensors):
        out_features, in_features = tensors.pop(f"{prefix}.weight")[1]
        numel = out_features * in_features
        tensors[f"{prefix}.weight"] = ("U8", [numel // 2, 1])
        tensors[f"{prefix}.weight.absmax"] = ("F32", [numel // 64])
        tensors[f"{prefix}.weight.quant_map"] = ("F32", [16])
    return tensors


def split(tensors: Tensors, parts: int) -> list[Tensors]:
    """The tensors over `parts` shards, in order (as sharded checkpoints are)."""
    names = list(tensors)
    size = math.ceil(len(names) / parts)
    return [{n: tensors[n] for n in names[i:i + size]} for i in range(0, len(names), size)]


def numel(tensors: Tensors) -> int:
    return sum(math.prod(shape) for _, shape in tensors.values())
