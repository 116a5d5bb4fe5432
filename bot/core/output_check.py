"""Does a model that loaded say anything sensible? A pure judgement of two numbers a trial measures.

`mlx_lm.load()` succeeding means the checkpoint had the tensors, names and shapes the model expects; it does not
mean their bytes were read right. A checkpoint read the wrong way (FP8 taken for affine 4-bit, an older
compressed-tensors path) loads without an error and generates garbage. So after its generation a trial measures:

- the model's perplexity on REFERENCE_TEXT, a fixed plain English paragraph (at most MAX_REFERENCE_TOKENS tokens
  of it, one forward pass): e to the mean cross-entropy of each next token. A model that learned nothing guesses
  uniformly over its vocabulary of V tokens, perplexity V; a working one is surprised far less.
- the share of its generated tokens that decode to printable text.

Either one past its limit says "loaded, but the output looks broken". The game's question stays whether `load()`
succeeds: such a model still loads (trial_policy.loaded_from).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

REFERENCE_TEXT = (
    "The library opens at nine in the morning and closes at six in the evening. On most days a few students "
    "arrive early, find a quiet table near the windows and spread out their notes. The librarian waters the "
    "plants, checks the returned books and puts them back on the shelves. By noon the reading room is full, and "
    "the only sounds are pages turning and pencils on paper. When it rains, people stay longer; when the sun "
    "comes out, they leave for the park."
)
# About 100 tokens for the tokenizers of real models, so all of it; a forward pass over this many tokens takes
# about as long as reading a short prompt. The logits (tokens x vocabulary, float32) stay under 150 MB even for
# a vocabulary of 262,144.
MAX_REFERENCE_TOKENS = 128

# The perplexity limit, as a power of the vocabulary size V. log(perplexity) / log(V) is the share of a uniform
# guess's surprise that is left: 1 for a model that learned nothing (random weights, or weights read as the
# wrong format, reach it or go beyond). Working models on plain English sit around 0.2-0.45 (GPT-2 small, about
# 37 over 50,257 tokens, is 0.33; a Llama of 32,000 tokens at 20 is 0.29). 0.7 (a perplexity of 1,424 over
# 32,000 tokens, 4,238 over 151,936, 48.5 over 256) leaves room for small, weak or heavily quantized models that
# still work, and catches garbage by orders of magnitude.
SURPRISE_LIMIT = 0.7
# A working model's generated tokens decode to printable text nearly always (whitespace and emoji included);
# garbage weights pick ids all over the vocabulary, whose large parts are byte pieces, control and unused tokens.
MIN_PRINTABLE_SHARE = 0.5
# Fewer generated tokens than this are too few to call a share.
MIN_TOKENS_FOR_SHARE = 8

_UNPRINTABLE_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}  # control, surrogate, private use, unassigned
_ALLOWED_CONTROLS = "\n\r\t"


def perplexity_limit(vocab_size: int) -> float:
    """The perplexity above which the output looks broken, for a model with this many output tokens."""
    return float(vocab_size) ** SURPRISE_LIMIT


def perplexity_words(p: float | None) -> str:
    """A perplexity as people read it: "2.7", "48.5", "1,424"."""
    if p is None:
        return "not a number"
    return f"{p:,.0f}" if p >= 100 else f"{p:.1f}"


def is_printable(text: str) -> bool:
    """Text a person can read: no control characters (but line breaks and tabs), no unassigned or private-use
    code points, no U+FFFD (bytes that were not valid UTF-8)."""
    return all(ch in _ALLOWED_CONTROLS or (ch != "\ufffd" and unicodedata.category(ch) not in _UNPRINTABLE_CATEGORIES)
               for ch in text)


def printable_share(segments: Sequence[str]) -> float | None:
    """The share of generated tokens whose text is printable, from the text each token added (mlx-lm's streaming
    detokenizer). A token that added nothing is the start of a character still incomplete: it is judged with the
    token that completes it. Trailing tokens that never completed a character are not judged. None: no token."""
    judged = good = pending = 0
    for segment in segments:
        pending += 1
        if not segment:
            continue
        judged += pending
        if is_printable(segment):
            good += pending
        pending = 0
    return good / judged if judged else None


@dataclass(frozen=True)
class OutputCheck:
    perplexity: float | None  # None: not measured, or not a finite number (NaN or overflowing logits)
    vocab_size: int | None  # the model's output width (what a uniform guess spreads over)
    reference_tokens: int  # tokens of REFERENCE_TEXT measured
    printable_share: float | None
    generated_tokens: int
    measured: bool  # the perplexity pass ran (it may fail on a model whose forward pass needs more than tokens)

    @property
    def perplexity_limit(self) -> float | None:
        return perplexity_limit(self.vocab_size) if self.vocab_size else None

    @property
    def reasons(self) -> list[str]:
        """Why the output looks broken, in words; empty when it does not."""
        reasons = []
        if self.measured and self.perplexity is None:
            reasons.append("the model's loss on plain English is not a finite number (NaN or overflowing logits)")
        elif self.perplexity is not None and self.perplexity_limit is not None \
                and self.perplexity > self.perplexity_limit:
            reasons.append(f"perplexity {perplexity_words(self.perplexity)} on plain English, over the "
                           f"{perplexity_words(self.perplexity_limit)} that looks broken for a vocabulary of "
                           f"{self.vocab_size:,} tokens")
        if self.printable_share is not None and self.generated_tokens >= MIN_TOKENS_FOR_SHARE \
                and self.printable_share < MIN_PRINTABLE_SHARE:
            reasons.append(f"only {self.printable_share:.0%} of the generated tokens are printable text")
        return reasons

    @property
    def judged(self) -> bool:
        """Whether the numbers can say anything: a perplexity pass, or enough generated tokens."""
        return self.measured or (self.printable_share is not None and self.generated_tokens >= MIN_TOKENS_FOR_SHARE)

    @property
    def looks_broken(self) -> bool | None:
        """True: loaded, but the output looks broken; False: it looks fine; None: nothing to judge by."""
        if self.reasons:
            return True
        return False if self.judged else None

    def to_result(self) -> dict[str, Any]:
        """The trial result's fields (trial_worker.py's protocol)."""
        return {
            "perplexity": self.perplexity, "perplexity_limit": self.perplexity_limit, "vocab_size": self.vocab_size,
            "reference_tokens": self.reference_tokens, "printable_share": self.printable_share,
            "looks_broken": self.looks_broken, "broken_reasons": self.reasons,
        }


def judge(mean_nll: float | None, vocab_size: int | None, reference_tokens: int, printable: float | None,
          generated_tokens: int) -> OutputCheck:
    """The check from what the worker measured: the mean cross-entropy (nats per token) of the reference text
    (None when the pass could not run), the model's vocabulary, and the printable share of its generation."""
    perplexity = None
    if mean_nll is not None and math.isfinite(mean_nll):
        try:
            perplexity = math.exp(mean_nll)
        except OverflowError:
            perplexity = None
    return OutputCheck(perplexity=perplexity, vocab_size=vocab_size, reference_tokens=reference_tokens,
                       printable_share=printable, generated_tokens=generated_tokens, measured=mean_nll is not None)
