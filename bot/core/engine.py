"""The verdict engine: RepoMetadata + the installed mlx-lm's CapabilityTable -> Verdict.

One small function per gate of mlx_lm.load(), checked in the loader's own order (config, weight
files, model_file, architecture, quantization, tokenizer). The first failure is the verdict; the
others are listed in the reasons so a learner sees everything that stands in the way at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

from bot.core import memory, quantization
from bot.core.capabilities import CapabilityTable, Dispatch
from bot.core.metadata import RepoMetadata
from bot.core.verdicts import (
    GATED, LOADS, NO_CONFIG, NOT_FOUND, REMOTE_CODE, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_QUANTIZATION,
    UNSUPPORTED_WEIGHTS, GateFailure, Verdict,
)

# What mlx_lm's download fetches that AutoTokenizer can build a tokenizer from.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tiktoken.model", "*.tiktoken", "vocab.json", "vocab.txt")


@dataclass(frozen=True)
class HostMemory:
    budget_bytes: int
    source: str  # e.g. "Metal recommended working set" or "physical RAM"


@dataclass(frozen=True)
class EngineSettings:
    context_tokens: int = 4096  # KV cache sized for this many tokens
    fit_fraction: float = 0.75  # above this share of the budget a model is "tight"


# ---- access --------------------------------------------------------------------------------------


def access_verdict(repo_id: str, revision: str | None, verdict: str, detail: str, mlx_lm_version: str) -> Verdict:
    """The verdict for a repo whose files could not be read: gated or not found."""
    if verdict == GATED:
        reason = (
            "The repo is gated: accept its license on the model page while logged in, then give canrun a "
            "token with access (HF_TOKEN)."
        )
    else:
        reason = "No such model on Hugging Face (or it is private)." if not revision else (
            f"No such model or revision `{revision}` on Hugging Face (or it is private)."
        )
    if detail:
        reason += f" The hub said: {detail}"
    assert verdict in (GATED, NOT_FOUND)
    return Verdict(repo=repo_id, revision=revision, verdict=verdict, reasons=[reason], mlx_lm_version=mlx_lm_version)


# ---- gates ---------------------------------------------------------------------------------------


def check_config(meta: RepoMetadata) -> GateFailure | None:
    if meta.config is None:
        if meta.config_error:
            return GateFailure(NO_CONFIG, f"config.json does not parse: {meta.config_error}")
        if meta.has_file("model_index.json"):
            why = "This is a diffusers pipeline (model_index.json), not a language model for mlx-lm."
        elif meta.has_file("adapter_config.json"):
            why = "This is a LoRA adapter, not a full model: load its base model with the adapter (`--adapter-path`)."
        elif meta.has_file("params.json"):
            why = "Only Mistral's native format (params.json), no config.json for mlx-lm."
        else:
            why = "There is no config.json at the top of the repo."
        return GateFailure(NO_CONFIG, why)
    if not isinstance(meta.config, dict) or not isinstance(meta.config.get("model_type"), str):
        return GateFailure(NO_CONFIG, "config.json has no `model_type`, so mlx-lm cannot pick an architecture.")
    return None


def check_weight_files(meta: RepoMetadata) -> GateFailure | None:
    if meta.weight_files:
        return None
    root = [f.path for f in meta.files if "/" not in f.path]
    if any(p.endswith(".gguf") for p in root):
        why = "Only GGUF files: `mlx_lm.load()` reads safetensors (GGUF is llama.cpp's format)."
    elif any(fnmatch(p, "pytorch_model*.bin") for p in root):
        why = ("Only PyTorch `.bin` weights: `mlx_lm.load()` reads `model*.safetensors`, and `mlx_lm.convert` reads "
               "safetensors too. Look for a safetensors upload of this model or of its base model.")
    elif "consolidated.safetensors" in root or any(fnmatch(p, "consolidated*.safetensors") for p in root):
        why = "Only Mistral's `consolidated.safetensors`: mlx-lm reads `model*.safetensors` with a Hugging Face config."
    elif any(p.endswith(".safetensors") for p in root):
        names = ", ".join(f"`{p}`" for p in root if p.endswith(".safetensors"))[:300]
        why = f"Safetensors files are there ({names}) but none is named `model*.safetensors`, which is what mlx-lm looks for."
    elif any(f.path.endswith(".safetensors") for f in meta.files):
        why = "The safetensors weights are in subfolders; mlx-lm reads `model*.safetensors` at the top of the repo."
    else:
        why = "There are no weight files mlx-lm can read (it needs `model*.safetensors`)."
    return GateFailure(UNSUPPORTED_WEIGHTS, why)


def check_model_file(meta: RepoMetadata) -> GateFailure | None:
    model_file = (meta.config or {}).get("model_file")
    if model_file is None:
        return None
    return GateFailure(
        REMOTE_CODE,
        f"config.json names its own model code (`model_file`: `{str(model_file)[:100]}`); mlx-lm would have to run it "
        "(trust_remote_code), which canrun never does.",
    )


def check_architecture(meta: RepoMetadata, d: Dispatch, table: CapabilityTable) -> GateFailure | None:
    config = meta.config or {}
    if d.info is None or not d.info.is_architecture:
        why = f"mlx-lm {table.mlx_lm_version} has no architecture for model_type `{d.model_type}`"
        if d.module != d.model_type:
            why += f" (it is remapped to `{d.module}`, which does not exist)"
        why += "."
        if config.get("auto_map"):
            why += " The repo ships its own modelling code for transformers; mlx-lm never uses it."
        return GateFailure(UNSUPPORTED_ARCHITECTURE, why)
    if d.info.import_error:
        need = f" Install `{d.info.missing_package}` to enable it." if d.info.missing_package else ""
        return GateFailure(
            UNSUPPORTED_ARCHITECTURE,
            f"mlx_lm.models.{d.module} exists but cannot be imported here: {d.info.import_error[:200]}.{need}",
        )
    missing = [a for a in d.info.required_args if a not in config]
    if missing:
        return GateFailure(
            UNSUPPORTED_ARCHITECTURE,
            f"config.json lacks {', '.join(f'`{m}`' for m in missing[:6])}, which mlx_lm.models.{d.module} requires.",
        )
    return None


def check_tokenizer(meta: RepoMetadata) -> GateFailure | None:
    has_tokenizer_json = meta.has_file("tokenizer.json")
    auto_map = (meta.tokenizer_config or {}).get("auto_map")
    if auto_map and not has_tokenizer_json:
        return GateFailure(
            REMOTE_CODE,
            "The tokenizer exists only as the repo's own Python code (`auto_map` in tokenizer_config.json, no "
            "tokenizer.json); loading it needs trust_remote_code.",
        )
    if any(meta.root_files(pattern) for pattern in TOKENIZER_FILES):
        return None
    return GateFailure(
        NO_CONFIG,
        "No tokenizer files (tokenizer.json, tokenizer.model, tiktoken or vocab files), so the tokenizer cannot load.",
    )


def reaches_a_load(meta: RepoMetadata) -> bool:
    """Whether mlx-lm's own load can be asked: what fails before it (no config, no safetensors, no tokenizer
    files) is decided by the static gates alone, and so is `model_file`: some mlx-lm versions import that path
    without asking for trust_remote_code, and a path like `../x.py` would leave the staged folder. A tokenizer
    named in `auto_map` goes to the load: transformers uses a class of its own when the config names one (and
    the load works), else it refuses for want of trust_remote_code, which the answer then says. Repo code is
    never fetched, never run."""
    tokenizer = check_tokenizer(meta)
    return (check_config(meta) is None and check_weight_files(meta) is None and check_model_file(meta) is None
            and (tokenizer is None or tokenizer.verdict == REMOTE_CODE))


# ---- the decision --------------------------------------------------------------------------------


def decide(
    meta: RepoMetadata,
    table: CapabilityTable,
    host: HostMemory,
    settings: EngineSettings = EngineSettings(),
) -> Verdict:
    failures: list[GateFailure] = []
    notes: list[str] = []
    verdict = Verdict(
        repo=meta.repo_id, revision=meta.revision, sha=meta.sha, verdict=LOADS,
        weights_bytes=meta.weights_bytes, mlx_lm_version=table.mlx_lm_version, metadata_fetched_at=meta.fetched_at,
    )

    config_failure = check_config(meta)
    _add(failures, config_failure)
    _add(failures, check_weight_files(meta))
    quant = None
    if config_failure is None:
        config = meta.config or {}
        _add(failures, check_model_file(meta))
        d = table.dispatch(config["model_type"], config.get("architectures"))
        verdict.model_type, verdict.remapped_by = d.model_type, d.remapped_by
        # No module when mlx-lm has none (or only a helper of that name): never name one that does not exist.
        verdict.module = d.module if d.info is not None and d.info.is_architecture else None
        _add(failures, check_architecture(meta, d, table))
        quant = quantization.analyze(config, meta.hf_quant_config, meta.tensors, d.info)
        verdict.quantization = quant.label
        if quant.failure:
            _add(failures, GateFailure(UNSUPPORTED_QUANTIZATION, quant.failure))
        if quant.note:
            notes.append(quant.note)
    _add(failures, check_tokenizer(meta))

    if failures:
        verdict.verdict = failures[0].verdict
    verdict.reasons = [f.reason for f in failures] + notes
    if not failures:
        verdict.reasons.insert(0, _loads_reason(verdict))

    bits = quant.bits if quant else None
    verdict.params = memory.count_parameters(meta.tensors, meta.hub_parameters, bits)
    verdict.memory = memory.memory_report(
        weights_bytes=meta.weights_bytes,
        params=verdict.params,
        memory_factor=quant.memory_factor if quant else 1.0,
        kv_cache=memory.kv_cache_bytes(meta.config or {}, settings.context_tokens),
        budget=host.budget_bytes,
        fit_fraction=settings.fit_fraction,
    )
    return verdict


def _add(failures: list[GateFailure], failure: GateFailure | None) -> None:
    if failure is not None:
        failures.append(failure)


def _loads_reason(v: Verdict) -> str:
    via = f" (remapped to `{v.module}` by mlx-lm's {v.remapped_by})" if v.remapped_by else ""
    return f"model_type `{v.model_type}` is supported by mlx_lm.models.{v.module}{via}; weights, quantization and tokenizer check out."
