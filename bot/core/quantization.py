"""Gate 5 of mlx_lm.load(): is the checkpoint's quantization one the installed loader handles?

Mirrors the branches of mlx_lm.utils.load_model (0.32): MLX's own `quantization` key first, then a
`quantization_config` (in config.json, under text_config, or in hf_quant_config.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.capabilities import ModuleInfo
from bot.core.metadata import Tensor

# compressed-tensors formats mlx_lm.utils._compressed_tensors_quantization maps to MLX modes.
COMPRESSED_TENSORS_FORMATS = {"pack-quantized", "nvfp4-pack-quantized", "mxfp4-pack-quantized"}
# Methods load_model converts on its own, without looking at the tensors.
ALWAYS_LOADS = {"bitnet": "BitNet", "mxfp4": "MXFP4", "mxfp8": "MXFP8"}


@dataclass(frozen=True)
class Quantization:
    label: str  # what a learner sees: "bf16", "4-bit MLX", "AWQ 4-bit", ...
    method: str | None = None  # None: not quantized; "mlx" for MLX's own key; else quant_method
    bits: int | None = None
    failure: str | None = None  # why load() would fail, when it would
    memory_factor: float = 1.0  # loaded size / file size (fp8 dequantized by sanitize doubles it)
    note: str | None = None  # something worth saying even when it loads


def quantization_config(config: dict[str, Any], hf_quant_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quantization_config load_model would use, looked up in the same order it does."""
    qc = config.get("quantization_config")
    if qc is None:
        qc = (config.get("text_config") or {}).get("quantization_config")
    if qc is None:
        qc = hf_quant_config
    return qc or None


def needs_tensor_names(config: dict[str, Any] | None, hf_quant_config: dict[str, Any] | None) -> bool:
    """Whether the verdict depends on tensor names/shapes (so the hub service reads safetensors headers)."""
    if not config:
        return False
    return "quantization" in config or quantization_config(config, hf_quant_config) is not None


def unquantized_label(config: dict[str, Any]) -> str:
    dtype = config.get("torch_dtype") or config.get("dtype") or (config.get("text_config") or {}).get("torch_dtype")
    names = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
    return names.get(str(dtype), str(dtype)) if dtype else "unquantized"


def analyze(
    config: dict[str, Any],
    hf_quant_config: dict[str, Any] | None,
    tensors: dict[str, Tensor] | None,
    module: ModuleInfo | None,
) -> Quantization:
    mlx_q = config.get("quantization")
    if mlx_q is not None:
        bits = mlx_q.get("bits") if isinstance(mlx_q, dict) else None
        mode = mlx_q.get("mode", "affine") if isinstance(mlx_q, dict) else "affine"
        label = f"{bits}-bit MLX" + ("" if mode == "affine" else f" ({mode})")
        return Quantization(label, "mlx", bits)

    qc = quantization_config(config, hf_quant_config)
    if qc is None:
        return Quantization(unquantized_label(config))
    if not isinstance(qc, dict) or "quant_method" not in qc:
        return Quantization("unknown quantization", failure="`quantization_config` has no `quant_method`, so load_model stops with a KeyError.")

    method = str(qc["quant_method"])
    if method in ALWAYS_LOADS:
        bits = 8 if method == "mxfp8" else (4 if method == "mxfp4" else None)
        return Quantization(ALWAYS_LOADS[method], method, bits)
    if method == "fp8":
        return _fp8(qc, module)
    if method == "compressed-tensors":
        fmt = qc.get("format")
        if fmt in COMPRESSED_TENSORS_FORMATS:
            return Quantization(f"compressed-tensors {fmt}", method, 4)
        return Quantization(
            f"compressed-tensors {fmt}", method,
            failure=f"compressed-tensors format `{fmt}` is not one mlx-lm reads "
            f"(it reads {', '.join(sorted(COMPRESSED_TENSORS_FORMATS))}).",
        )
    if method == "modelopt":
        settings = qc.get("quantization", qc)
        algo = settings.get("quant_algo") if isinstance(settings, dict) else None
        if algo == "NVFP4":
            return Quantization("ModelOpt NVFP4", method, 4)
        return Quantization(f"ModelOpt {algo}", method, failure=f"ModelOpt `{algo}` checkpoints are not supported; mlx-lm reads only NVFP4.")
    if method in ("awq", "gptq"):
        return _awq_gptq(method, qc, tensors)
    return Quantization(
        method, method,
        failure=f"mlx-lm does not know `{method}` quantization: it ignores the setting and then fails on the "
        "extra quantization tensors in the weights.",
    )


def _fp8(qc: dict[str, Any], module: ModuleInfo | None) -> Quantization:
    block = list(qc.get("weight_block_size") or ())
    if qc.get("scale_fmt") == "ue8m0" and block == [32, 32]:
        return Quantization("FP8 (ue8m0, 32x32 blocks: loads as MXFP8)", "fp8", 8)
    if module is not None and module.dequantizes_fp8:
        return Quantization(
            "FP8", "fp8", 8, memory_factor=2.0,
            note=f"`{module.name}` turns the FP8 weights into bf16 while loading, so it needs about twice the download in memory.",
        )
    where = f"`{module.name}`" if module is not None else "this architecture"
    return Quantization(
        "FP8", "fp8",
        failure=f"FP8 weights with block size {block or 'unknown'}: {where} does not dequantize them "
        "(only modules whose sanitize() handles `weight_scale_inv` do).",
    )


def _awq_gptq(method: str, qc: dict[str, Any], tensors: dict[str, Tensor] | None) -> Quantization:
    bits = qc.get("bits", 4)
    label = f"{method.upper()} {bits}-bit"
    if bits != 4:
        return Quantization(label, method, bits, failure=f"mlx-lm reads {method.upper()} checkpoints only at 4 bits, this one is {bits}-bit.")
    if tensors is None:
        return Quantization(label, method, bits, note="The tensor names could not be read, so `g_idx` and the packing layout were not checked.")
    g_idx = next((name for name in tensors if name.endswith(".g_idx")), None)
    if g_idx is not None:
        return Quantization(
            label, method, bits,
            failure=f"The weights carry `g_idx` tensors (`{g_idx}`): mlx-lm refuses checkpoints with non-contiguous group indices.",
        )
    layout_error = _awq_layout_error(tensors)
    if layout_error:
        return Quantization(label, method, bits, failure=layout_error)
    return Quantization(label, method, bits)


def _awq_layout_error(tensors: dict[str, Tensor]) -> str | None:
    """mlx-lm unpacks `qweight` as AutoAWQ stores it: [in, out/8] beside scales [groups, out].

    GPTQ packs along the input instead ([in/8, out]); fed to the same transform, the shapes come out
    wrong and load_weights rejects them. The header's shapes tell the layouts apart.
    """
    for name, qweight in tensors.items():
        if not name.endswith(".qweight"):
            continue
        scales = tensors.get(name[: -len("qweight")] + "scales")
        if scales is None or len(qweight.shape) != 2 or len(scales.shape) != 2:
            continue
        if qweight.shape[1] * 8 != scales.shape[1]:
            return (
                f"`{name}` is packed along the input dimension (GPTQ layout {list(qweight.shape)}); "
                "mlx-lm only unpacks the AutoAWQ layout ([in, out/8]), so the shapes would not match."
            )
        return None
    return None
