"""A verdict's facts in words, extracted once; the terminal (text.py) and Discord (bot/discord/render.py) each only
lay them out (and Discord escapes what came from a repo)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.engine import HostMemory
from bot.core.speed import SpeedReport
from bot.core.verdicts import LOADS, Suggestion, Verdict
from bot.render import speed as speed_words
from bot.core.units import FIT_WORDS, MEMORY_LABELS, human_bytes, human_params


@dataclass(frozen=True)
class MemoryLine:
    status: str  # fits / tight / too_large
    label: str  # "as is", "as 4-bit", ...
    need: str  # "~4.4 GB"
    words: str  # the status in words


@dataclass(frozen=True)
class VerdictFacts:
    mark: str  # ✅ loads, ❌ anything else
    name: str  # org/name, @revision when one was asked for
    headline: str
    verdict: str
    model_type: str | None
    target: str | None  # "mlx_lm.models.<module>"; None when this mlx-lm has no module for the model_type
    remapped_by: str | None
    quantization: str | None
    weights: str | None  # "4.4 GB"
    params: str | None  # "7.2B"
    budget: str  # this host's memory budget
    memory: list[MemoryLine]
    speed: SpeedReport | None  # only when it has figures
    speed_lines: list[str]
    fixes: list[str]
    reasons: list[str]
    suggestions: list[Suggestion]
    unavailable: list[str]  # suggestion sources that did not answer in time
    mlx_lm_version: str | None


def verdict_facts(v: Verdict, host: HostMemory) -> VerdictFacts:
    speed = v.speed if v.speed and v.speed.variants else None
    return VerdictFacts(
        mark="✅" if v.verdict == LOADS else "❌",
        name=v.repo + (f"@{v.revision}" if v.revision else ""),
        headline=v.headline,
        verdict=v.verdict,
        model_type=v.model_type or None,
        target=f"mlx_lm.models.{v.module}" if v.module else None,
        remapped_by=v.remapped_by or None,
        quantization=v.quantization or None,
        weights=human_bytes(v.weights_bytes) if v.weights_bytes is not None else None,
        params=human_params(v.params) if v.params else None,
        budget=human_bytes(host.budget_bytes),
        memory=[MemoryLine(m.status, MEMORY_LABELS[k], f"~{human_bytes(m.need_bytes)}", FIT_WORDS[m.status])
                for k, m in v.memory.items()],
        speed=speed,
        speed_lines=speed_words.generation_lines(speed) if speed else [],
        fixes=[f["text"] for f in v.fixes],
        reasons=list(v.reasons),
        suggestions=list(v.suggestions),
        unavailable=list(v.suggestions_unavailable),
        mlx_lm_version=v.mlx_lm_version,
    )
