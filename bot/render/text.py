"""`canrun check` human output: one block per repo, readable in one pass."""

from __future__ import annotations

from bot.core.engine import HostMemory
from bot.core.verdicts import LOADS, Verdict
from bot.render.units import FIT_WORDS, MEMORY_LABELS, human_bytes, human_params


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
    for reason in v.reasons:
        lines.append(f"  - {reason}")
    for s in v.suggestions:
        lines.append(f"  → {s.title}: {s.url}" + (f" ({s.detail})" if s.detail else ""))
    if v.suggestions_unavailable:
        lines.append(f"  (suggestions from {' and '.join(v.suggestions_unavailable)} unavailable right now)")
    lines.append(f"  (mlx-lm {v.mlx_lm_version})")
    return "\n".join(lines)
