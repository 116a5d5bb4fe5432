"""`canrun check` human output: one block per repo, readable in one pass."""

from __future__ import annotations

import time

from bot.core.engine import HostMemory
from bot.core.verdicts import Verdict
from bot.render import speed as speed_words
from bot.render.verdict_facts import verdict_facts


def render_verdict(v: Verdict, host: HostMemory) -> str:
    f = verdict_facts(v, host)
    lines = [f"{f.mark} {f.name}: {f.headline} [{f.verdict}]"]
    if f.model_type:
        arch = f"  model_type {f.model_type} → {f.target or 'no module in this mlx-lm'}"
        if f.remapped_by:
            arch += f" (via {f.remapped_by})"
        lines.append(arch)
    size = [s for s in (f.quantization, f.weights and f"weights {f.weights}", f.params and f"{f.params} parameters")
            if s]
    if size:
        lines.append("  " + " · ".join(size))
    if f.memory:
        parts = [f"{m.label} needs {m.need}: {m.words}" for m in f.memory]
        lines.append(f"  memory ({f.budget} {host.source}): " + "; ".join(parts))
    if f.speed:
        lines.append(f"  {speed_words.heading(f.speed)}:")
        lines += [f"    {line}" for line in f.speed_lines]
    lines += [f"  ↳ {fix}" for fix in f.fixes]
    lines += [f"  - {reason}" for reason in f.reasons]
    lines += [f"  → {s.title}: {s.url}" + (f" ({s.detail})" if s.detail else "") for s in f.suggestions]
    if f.unavailable:
        lines.append(f"  (suggestions from {' and '.join(f.unavailable)} unavailable right now)")
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
