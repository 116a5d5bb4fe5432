"""A trial's output check in words (bot/core/output_check.py), shared by the terminal and Discord: plain text of
canrun's own, with no markdown, from the numbers in a trial's result."""

from __future__ import annotations

from typing import Any

from bot.core.output_check import perplexity_words

BROKEN = "loaded, but the output looks broken"


def looks_broken(result: dict[str, Any]) -> bool:
    return result.get("looks_broken") is True


def broken_line(result: dict[str, Any]) -> str | None:
    """"Loaded, but the output looks broken: <why>." for a trial that loaded and whose output looks broken."""
    if not looks_broken(result):
        return None
    reasons = "; ".join(result.get("broken_reasons") or []) or "see the numbers"
    return f"{BROKEN[0].upper()}{BROKEN[1:]}: {reasons}."


def check_numbers(result: dict[str, Any]) -> str | None:
    """The output check's numbers in one line; None for a trial that never got that far."""
    if "looks_broken" not in result:
        return None
    parts = []
    if result.get("output_check_error"):
        parts.append(f"perplexity not measured ({result['output_check_error']})")
    elif result.get("vocab_size"):
        parts.append(f"perplexity {perplexity_words(result.get('perplexity'))} on a plain English paragraph "
                     f"(over {perplexity_words(result.get('perplexity_limit'))} looks broken; guessing at random: "
                     f"{result['vocab_size']:,})")
    if result.get("printable_share") is not None:
        parts.append(f"{result['printable_share']:.0%} of generated tokens printable")
    return " · ".join(parts) or None


def short_check(perplexity: float | None, printable: float | None, looks_broken_: bool | None) -> str | None:
    """A few words for a list of trials: "perplexity 2.7, 100% printable", or "loaded, but the output looks broken
    (perplexity 312, 75% printable)"; None for a trial without an output check."""
    if looks_broken_ is None:
        return None
    numbers = f"perplexity {perplexity_words(perplexity)}"
    if printable is not None:
        numbers += f", {printable:.0%} printable"
    return f"{BROKEN} ({numbers})" if looks_broken_ else numbers
