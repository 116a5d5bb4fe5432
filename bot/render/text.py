"""`canrun check` human output: one block per repo, readable in one pass."""

from __future__ import annotations

import time

from bot.core.engine import HostMemory
from bot.core.verdicts import LOADS, Verdict
from bot.render import speed as speed_words
from bot.core.units import FIT_WORDS, MEMORY_LABELS, human_bytes, human_params


def render_verdict(v: Verdict, host: HostMemory) -> str:
    mark = "✅" if v.verdict == LOADS else "❌"
    name = v.repo + (f"@{v.revision}" if v.revision else "")
    lines = [f"{mark} {name}: {v.headline} [{v.verdict}]"]
    if v.model_type:
        target = f"mlx_lm.models.{v.module}" if v.module else "no module in this mlx-lm"
        arch = f"  model_type {v.model_type} → {target}"
        if v.remapped_by:
            arch += f" (via {v.remapped_by})"
        lines.append(arch)
    facts = []
    if v.quantization:
        facts.append(v.quantization)
    if v.weights_bytes is not None:
        facts.append(f"weights {human_bytes(v.weights_bytes)}")
    if v.params:
        facts.append(f"{human_params(v.params)} parameters")
    if facts:
        lines.append("  " + " · ".join(facts))
    if v.memory:
        parts = [
            f"{MEMORY_LABELS[k]} needs ~{human_bytes(m.need_bytes)}: {FIT_WORDS[m.status]}"
            for k, m in v.memory.items()
        ]
        lines.append(f"  memory ({human_bytes(host.budget_bytes)} {host.source}): " + "; ".join(parts))
    if v.speed and v.speed.variants:
        lines.append(f"  {speed_words.heading(v.speed)}:")
        lines += [f"    {line}" for line in speed_words.generation_lines(v.speed)]
    for fix in v.fixes:
        lines.append(f"  ↳ {fix['text']}")
    for reason in v.reasons:
        lines.append(f"  - {reason}")
    for s in v.suggestions:
        lines.append(f"  → {s.title}: {s.url}" + (f" ({s.detail})" if s.detail else ""))
    if v.suggestions_unavailable:
        lines.append(f"  (suggestions from {' and '.join(v.suggestions_unavailable)} unavailable right now)")
    lines.append(f"  ({_provenance(v)})")
    return "\n".join(lines)


def _provenance(v: Verdict, now: float | None = None) -> str:
    """Which mlx-lm answered and how, and how old the metadata is when it came from the cache."""
    how = "its own dry load" if v.checked_by == "dry_load" else "canrun's static check"
    text = f"mlx-lm {v.mlx_lm_version}, {how}"
    age = (now or time.time()) - v.metadata_fetched_at if v.metadata_fetched_at else 0
    if age >= 60:
        text += f"; metadata read {_ago(age)} ago, from the cache (--refresh reads it again)"
    return text


def _ago(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{round(minutes / 60)} h"
