"""A verdict's speed report in words, shared by the terminal and Discord (which escapes `basis` itself)."""

from __future__ import annotations

from bot.core.speed import CALIBRATED, MEASURED, Range, SpeedReport
from bot.core.units import MEMORY_LABELS


def tps(r: Range) -> str:
    """"20–35 tok/s (~28)"; a measured figure alone."""
    if r.low == r.high:
        return f"{_n(r.point)} tok/s"
    return f"{_n(r.low)}–{_n(r.high)} tok/s (~{_n(r.point)})"


def _n(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def label_words(report: SpeedReport) -> str:
    """Which evidence the figures rest on."""
    if report.label == MEASURED:
        return f"measured by {report.basis}"
    if report.label == CALIBRATED:
        return f"calibrated by {report.basis}"
    return f"estimated from {report.basis}"


def generation_lines(report: SpeedReport) -> list[str]:
    """One line per variant: generation at the context, prompt at prompt_tokens."""
    lines = []
    for key, v in report.variants.items():
        line = f"{MEMORY_LABELS[key]}: {tps(v.generation_tps)}"
        if v.prompt_tps is not None:
            line += f"; prompt {tps(v.prompt_tps)}"
        lines.append(line)
    return lines


def heading(report: SpeedReport) -> str:
    return (f"speed ({label_words(report)}; generating at {report.context_tokens} tokens of context, "
            f"prompt of {report.prompt_tokens} tokens)")


def prediction_line(compared: dict) -> str:
    """A trial's measured speed beside what canrun predicted for it (bot.core.speed.trial_prediction). The
    measured rate is decoding alone, a little below mlx-lm's generation figure (bot.core.speed.decode_tps)."""
    return (f"predicted {_n(compared['predicted_tps'])} tok/s ({compared['label']}), measured "
            f"{_n(compared['measured_tps'])} tok/s decoding: {compared['error_pct']:+.0f} %")
