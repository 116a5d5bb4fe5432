"""Which gate a model tests, for calibration by kind: a learner's accuracy on architecture questions, on
quantization questions, ... shows which gate their intuition misses. Pure.

The kind comes from canrun's verdict (and the memory fit beside it) when it forecast the model: the gate that
decides whether `load()` succeeds. It is the question's kind, not its answer: a `unsupported_quantization` model
that a newer mlx-lm loads after all is still a quantization question, and a member who said it loads was right
on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping

from bot.core.verdicts import (
    LOADS, NO_CONFIG, REMOTE_CODE, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_QUANTIZATION, UNSUPPORTED_WEIGHTS,
)

ARCHITECTURE, WEIGHTS, QUANTIZATION, CODE_OR_TOKENIZER, MEMORY, KIND_LOADS = (
    "architecture", "weights", "quantization", "remote code / tokenizer", "memory", "loads")
KINDS = (ARCHITECTURE, WEIGHTS, QUANTIZATION, CODE_OR_TOKENIZER, MEMORY, KIND_LOADS)  # in load()'s order

_BY_VERDICT = {
    UNSUPPORTED_ARCHITECTURE: ARCHITECTURE,  # no module of mlx_lm.models for the model_type
    UNSUPPORTED_WEIGHTS: WEIGHTS,  # no model*.safetensors at the top of the repo
    UNSUPPORTED_QUANTIZATION: QUANTIZATION,  # a format mlx-lm cannot read
    REMOTE_CODE: CODE_OR_TOKENIZER,  # the repo's own Python code, for the model or the tokenizer
    NO_CONFIG: CODE_OR_TOKENIZER,  # the files around the weights: config.json or the tokenizer's files
}


def failure_kind(verdict: str, fit: str | None = None) -> str | None:
    """The kind of question a model is, from canrun's verdict and its memory fit as the repo is ('fits', 'tight',
    'too_large'); None for a verdict that asks nothing about load() (gated, not_found). A model that mlx-lm can
    read but that is too large for this machine is a memory question."""
    if verdict == LOADS:
        return MEMORY if fit == "too_large" else KIND_LOADS
    return _BY_VERDICT.get(verdict)


@dataclass(frozen=True)
class KindAccuracy:
    kind: str
    count: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.count


def accuracy_by_kind(counts: Mapping[str, tuple[int, int]]) -> list[KindAccuracy]:
    """(count, correct) per kind -> the kinds a member predicted, in KINDS order; unknown kinds are left out."""
    return [KindAccuracy(kind, *counts[kind]) for kind in KINDS if counts.get(kind, (0, 0))[0] > 0]


def weakest(kinds: list[KindAccuracy], min_count: int = 3) -> KindAccuracy | None:
    """The kind with the lowest accuracy among those with at least `min_count` predictions, when there are two or
    more such kinds to compare (ties: the one that comes first in load()'s order)."""
    enough = [k for k in kinds if k.count >= min_count]
    return min(enough, key=lambda k: k.accuracy) if len(enough) >= 2 else None
