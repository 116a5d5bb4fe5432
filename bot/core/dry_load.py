"""What a dry load's outcome means: mlx-lm's own answer turned into the verdict vocabulary.

The dry load (bot.services.dry_load) runs the installed mlx-lm's `load_model` and `load_tokenizer` on
the repo's metadata. Success is `loads`. A failure is sorted by where in mlx-lm's code it was raised
(the traceback's function names, stable across versions) and by what it says; mlx-lm's own message is
the first reason. The static gates (bot.core.engine) still explain in plain words; where they disagree,
the dry load wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.core import memory
from bot.core.verdicts import (
    LOADS, NO_CONFIG, REMOTE_CODE, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_QUANTIZATION, UNSUPPORTED_WEIGHTS,
    MemoryFit, Verdict,
)

# Frames of mlx-lm's loader (names used from 0.2x to 0.32) that mean "the quantization step failed".
QUANTIZATION_FRAMES = {
    "_quantize", "_transform_awq_weights", "_unpack_awq_weights", "_compressed_tensors_quantization",
    "bitnet_quantize", "infer_quant_config", "class_predicate", "to_quantized", "_maybe_qq",
}
ARCHITECTURE_FRAMES = {"_get_classes", "get_model_classes", "from_dict"}
WEIGHT_FRAMES = {"load_weights", "sanitize"}
QUANTIZATION_WORDS = ("quant", "awq", "gptq", "fp8", "nvfp4", "mxfp", "bits")


@dataclass
class DryLoadOutcome:
    """The child's answer for one repo at one commit (cached by repo, sha and versions)."""

    ok: bool
    mlx_lm_version: str
    mlx_version: str
    phase: str = "done"  # "model" or "tokenizer" when it failed
    error_type: str | None = None
    message: str | None = None
    frames: list[str] = field(default_factory=list)
    model_bytes: int | None = None  # what mlx holds after sanitize, quantization, dequantization
    params: int | None = None
    quantized: bool = False
    conversions: dict[str, int] = field(default_factory=dict)  # "8bit"/"4bit" -> bytes after quantize_model
    kv_layout: list[dict[str, Any]] | None = None  # per cache entry: per_token bytes, window limit, fixed bytes
    expert_bytes: int = 0  # bytes of MoE expert weights (stacked switch layers): a token reads only its experts'
    experts: int | None = None  # experts per MoE layer (the stacked weights' first dimension)
    notes: list[str] = field(default_factory=list)
    load_seconds: float | None = None
    module: str | None = None  # the mlx_lm.models module that built the model (a success's own word)

    @classmethod
    def from_child(cls, msg: dict[str, Any], mlx_lm_version: str, mlx_version: str) -> DryLoadOutcome:
        keys = {f for f in cls.__dataclass_fields__} - {"mlx_lm_version", "mlx_version"}
        return cls(mlx_lm_version=mlx_lm_version, mlx_version=mlx_version,
                   **{k: v for k, v in msg.items() if k in keys and v is not None})

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DryLoadOutcome:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _has_quantization_config(config: dict[str, Any], hf_quant_config: dict[str, Any] | None) -> bool:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return bool(config.get("quantization_config") or text.get("quantization_config") or hf_quant_config)


def classify(outcome: DryLoadOutcome, config: dict[str, Any], hf_quant_config: dict[str, Any] | None = None) -> str:
    """The verdict for a failed dry load."""
    assert not outcome.ok
    message = (outcome.message or "").lower()
    frames = set(outcome.frames)
    if "trust_remote_code" in message or "model_file" in message or "custom module" in message:
        return REMOTE_CODE
    if outcome.phase == "tokenizer":
        # A package the tokenizer needs (sentencepiece, tiktoken) is missing from this environment: a load fails
        # here for a reason of this host, which no file of the repo can fix; otherwise its tokenizer files fail.
        return UNSUPPORTED_ARCHITECTURE if outcome.error_type in ("ModuleNotFoundError", "ImportError") else NO_CONFIG
    if frames & QUANTIZATION_FRAMES:
        return UNSUPPORTED_QUANTIZATION
    if frames & ARCHITECTURE_FRAMES or outcome.error_type in ("ModuleNotFoundError", "ImportError"):
        return UNSUPPORTED_ARCHITECTURE
    if "safetensors" in message and outcome.error_type == "FileNotFoundError":
        return UNSUPPORTED_WEIGHTS
    quantized = _has_quantization_config(config, hf_quant_config) or "quantization" in config
    if frames & WEIGHT_FRAMES:
        # Tensors the built model does not expect (or lacks) in a quantized checkpoint: the format is the cause.
        return UNSUPPORTED_QUANTIZATION if quantized else UNSUPPORTED_WEIGHTS
    if quantized and any(w in message for w in QUANTIZATION_WORDS):
        return UNSUPPORTED_QUANTIZATION
    # Building the model from this config failed (a missing or odd field): the architecture's code says no.
    return UNSUPPORTED_ARCHITECTURE


def first_reason(outcome: DryLoadOutcome) -> str:
    """mlx-lm's own words, attributed to the installed version."""
    text = " ".join((outcome.message or outcome.error_type or "failed").split())
    if len(text) > 400:
        text = text[:399] + "…"
    step = "loading the tokenizer" if outcome.phase == "tokenizer" else "load()"
    return f"mlx-lm {outcome.mlx_lm_version} ({step}): {text}"


def kv_cache_bytes(layout: list[dict[str, Any]], context_tokens: int) -> int:
    """The model's cache at `context_tokens`: windows stop growing at their limit, state layers are fixed."""
    total = 0.0
    for entry in layout:
        limit = entry.get("limit")
        tokens = min(context_tokens, limit) if isinstance(limit, int) and limit > 0 else context_tokens
        total += entry.get("per_token", 0) * tokens + entry.get("fixed", 0)
    return int(total)


def apply(verdict: Verdict, outcome: DryLoadOutcome, config: dict[str, Any],
          hf_quant_config: dict[str, Any] | None) -> bool:
    """Make `verdict` (the static one) the dry load's. Returns True when the two disagreed."""
    static = verdict.verdict
    verdict.checked_by = "dry_load"
    verdict.mlx_lm_version = outcome.mlx_lm_version
    verdict.mlx_version = outcome.mlx_version
    if outcome.ok:
        verdict.verdict = LOADS
        verdict.module = outcome.module or verdict.module
        if static != LOADS:
            verdict.reasons = [
                f"mlx-lm {outcome.mlx_lm_version} built the model, matched every tensor of the headers and loaded "
                "the tokenizer." + (f" (model_type `{verdict.model_type}`.)" if verdict.model_type else "")
            ]
    else:
        verdict.verdict = classify(outcome, config, hf_quant_config)
        # Keep the static explanations of failures (plain words); a static "it loads" would contradict.
        kept = verdict.reasons if static != LOADS else verdict.reasons[1:]
        verdict.reasons = [first_reason(outcome)] + [r for r in kept if r]
    verdict.reasons += [f"Note: {n}" for n in outcome.notes]
    if outcome.ok and outcome.params:
        verdict.params = outcome.params
    return static != verdict.verdict


def exact_memory(outcome: DryLoadOutcome, kv_fallback: int, context_tokens: int, budget: int,
                 fit_fraction: float) -> dict[str, MemoryFit] | None:
    """Memory from the built model (bytes mlx holds, its conversions, its own cache layout)."""
    if not outcome.ok or outcome.model_bytes is None:
        return None
    kv = kv_cache_bytes(outcome.kv_layout, context_tokens) if outcome.kv_layout else kv_fallback
    conversions = dict(sorted(outcome.conversions.items(), reverse=True))  # "8bit" before "4bit"
    return memory.fit_report(as_is=outcome.model_bytes, conversions=conversions, reference=outcome.model_bytes,
                             kv_cache=kv, budget=budget, fit_fraction=fit_fraction)
