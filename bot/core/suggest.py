"""What to do next when a model will not load (or is too big): the pure half of suggestions.

The service (bot.services.suggestions) fetches candidates; these functions decide which kinds of
suggestion a verdict deserves and how to rank and label what came back.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from bot.core import memory
from bot.core.units import human_bytes
from bot.core.verdicts import (
    LOADS, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_QUANTIZATION, UNSUPPORTED_WEIGHTS, MemoryFit, Suggestion, Verdict,
)

MLX_COMMUNITY = "mlx-community"
_QUANT_IN_NAME = [
    (re.compile(r"(?i)(?:^|[-_])mxfp4(?:$|[-_])"), "MXFP4"),
    (re.compile(r"(?i)(?:^|[-_])(\d)-?bits?(?:$|[-_])"), None),  # 4bit, 8-bit, 3bit, 6bit ...
    (re.compile(r"(?i)(?:^|[-_])(bf16|fp16|f16)(?:$|[-_])"), None),
    (re.compile(r"(?i)(?:^|[-_])dwq(?:$|[-_])"), "DWQ"),
]
LARGE_UNQUANTIZED_BYTES = 4 * 10**9
SAFE_MODEL_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")  # a model_type that may name a file path


def conversion_label(repo_id: str) -> str:
    """"4-bit", "8-bit", "bf16", ... read from an mlx-community repo name; "" when the name does not say."""
    name = repo_id.split("/")[-1]
    for pattern, fixed in _QUANT_IN_NAME:
        m = pattern.search(name)
        if m:
            if fixed:
                return fixed
            value = m.group(1).lower()
            return f"{value}-bit" if value.isdigit() else value
    return ""


def wants_conversions(v: Verdict) -> bool:
    """mlx-community conversions help when the model fails, or loads but is big and unquantized."""
    if v.repo.startswith(MLX_COMMUNITY + "/"):
        return False
    if v.verdict != LOADS:
        return True
    as_is = v.memory.get("as_is")
    unquantized = v.quantization in ("bf16", "fp16", "fp32", "unquantized")
    return bool(as_is and as_is.status != "fits") or (unquantized and (v.weights_bytes or 0) > LARGE_UNQUANTIZED_BYTES)


def wants_github(v: Verdict) -> bool:
    return v.verdict == UNSUPPORTED_ARCHITECTURE and bool(v.model_type)


def wants_base_model(v: Verdict) -> bool:
    """GGUF-only, bin-only or un-loadable quantized repos: the original model is the way in."""
    return v.verdict in (UNSUPPORTED_WEIGHTS, UNSUPPORTED_QUANTIZATION)


def name_query(repo_id: str) -> str:
    """The search words for conversions by name: the repo name without format suffixes."""
    name = repo_id.split("/")[-1]
    name = re.sub(r"(?i)[-_.](gguf|awq|gptq|bnb|4bit|8bit|int4|int8|fp8|hf|safetensors)$", "", name)
    return name


def rank_conversions(models: list[dict[str, Any]], *, prefer_small: bool, hub_url: str,
                     limit: int = 3, fits: dict[str, MemoryFit] | None = None) -> list[Suggestion]:
    """mlx-community conversions, most downloaded first; when size matters, a 4-bit one leads. With `fits` (the
    fit of each conversion whose size is known, see conversion_fits), the smallest that fits leads, then the
    others that fit, then the rest; each says its size and whether it fits. Links go to `hub_url`."""
    seen, ordered = set(), []
    for m in sorted(models, key=lambda m: -int(m.get("downloads") or 0)):
        if m["id"] in seen or not m["id"].startswith(MLX_COMMUNITY + "/"):
            continue
        seen.add(m["id"])
        ordered.append(m)
    if prefer_small:
        ordered.sort(key=lambda m: 0 if conversion_label(m["id"]) == "4-bit" else 1)  # stable: downloads order kept
    fits = fits or {}
    if fits:
        def rank(m: dict[str, Any]) -> tuple[int, int]:
            fit = fits.get(m["id"])
            if fit is None:
                return (2, 0)  # size unknown: after those known to fit, in the order above
            return (0, fit.need_bytes) if fit.status == "fits" else (3, fit.need_bytes)
        ordered.sort(key=rank)
    out = []
    for m in ordered[:limit]:
        label = conversion_label(m["id"])
        parts = [label] if label else []
        fit = fits.get(m["id"])
        if fit is not None:
            parts.append(f"needs {human_bytes(fit.need_bytes)}: {FIT_WORDS[fit.status]}")
        parts.append(f"{m.get('downloads') or 0:,} downloads")
        out.append(Suggestion("conversion", f"mlx-community conversion: {m['id']}", f"{hub_url}/{m['id']}",
                              " · ".join(parts)))
    return out


FIT_WORDS = {"fits": "fits here", "tight": "tight here", "too_large": "too large here"}


def conversion_fits(sizes: dict[str, int], *, as_is: MemoryFit, as_is_weights: int,
                    fit_fraction: float) -> dict[str, MemoryFit]:
    """The fit of each conversion (repo: weight bytes) at the verdict's context: the as-is need with the weights
    swapped (the same model's cache and working space), against the same budget."""
    kv_cache = max(0, as_is.need_bytes - memory.need_bytes(as_is_weights, 0))
    return {repo: memory.fit(memory.need_bytes(size, kv_cache), as_is.budget_bytes, fit_fraction)
            for repo, size in sizes.items()}


def size_matters(v: Verdict) -> bool:
    """The model is tight or too large here: a conversion's size decides whether it helps."""
    as_is = v.memory.get("as_is")
    return as_is is not None and as_is.status != "fits" and bool(v.weights_bytes)


def github_suggestions(items: list[dict[str, Any]], limit: int = 3) -> list[Suggestion]:
    out = []
    for item in items[:limit]:
        kind = "pull_request" if "pull_request" in item else "issue"
        what = "Open mlx-lm pull request" if kind == "pull_request" else "Open mlx-lm issue"
        out.append(Suggestion(kind, f"{what} #{item.get('number')}: {item.get('title', '')}", item.get("html_url", "")))
    return out


def upgrade_suggestion(model_type: str, installed: str, release: str | None, repo: str) -> Suggestion:
    if release:
        return Suggestion(
            "upgrade", f"`{model_type}` is supported in mlx-lm {release.lstrip('v')} (you have {installed})",
            f"https://github.com/{repo}/releases/tag/{release}", "pip install -U mlx-lm",
        )
    return Suggestion(
        "upgrade", f"`{model_type}` was added to mlx-lm's main branch, not yet released",
        f"https://github.com/{repo}", f"pip install git+https://github.com/{repo}",
    )


def convert_suggestion(base_repo: str, hub_url: str) -> Suggestion:
    return Suggestion(
        "convert_command", f"Convert the original yourself: mlx_lm.convert --hf-path {base_repo} -q",
        f"{hub_url}/{base_repo}", "makes a 4-bit MLX copy in ./mlx_model",
    )


def remapping_in_source(source: str, name: str = "MODEL_REMAPPING") -> dict[str, str]:
    """A dict literal assigned to `name` in Python source (mlx-lm's utils.py), read with ast: never executed."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return {}
            if isinstance(value, dict):
                return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return {}
