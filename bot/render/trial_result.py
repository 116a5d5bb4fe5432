"""`canrun trial` output: how the trial ended, mlx-lm's numbers or error, then the generated text; or JSON."""

from __future__ import annotations

import unicodedata
from typing import Any

from bot.render.output_check import broken_line, check_numbers
from bot.render.progress import PHASE_WORDS
from bot.render.speed import prediction_line
from bot.core.trial_outcome import CANCELLED, SUCCEEDED, TIMED_OUT, TrialOutcome
from bot.core.units import human_bytes
from bot.render.trial_facts import machine_line, trial_numbers

# Not TrialOutcome statuses: the trial never started, refused by the verdict or the limits, or no verdict came.
REFUSED, UNCHECKED = "refused", "unchecked"
CHECK_PHASE = "check"  # the phase such a trial ended in: the checks before any worker


def render_trial(name: str, outcome: TrialOutcome, *, prompt: str, prediction: dict[str, Any] | None = None) -> str:
    r = outcome.result
    took = f" ({outcome.duration_seconds:.1f} s)"
    while_ = PHASE_WORDS.get(outcome.phase or "", "starting")
    if outcome.status == SUCCEEDED:
        lines = [f"✅ {name}: mlx_lm.load() worked and the model generated text{took}."]
        if broken := broken_line(r):
            lines.append(f"⚠️ {broken}")
    elif outcome.status == CANCELLED:
        lines = [f"🛑 {name}: cancelled while {while_}{took}."]
    elif outcome.status == TIMED_OUT:
        lines = [f"⏱️ {name}: stopped while {while_}: {outcome.error}."]
    else:
        lines = [f"❌ {name}: the trial failed while {while_}{took}."]
    if outcome.error and outcome.status not in (CANCELLED, TIMED_OUT):
        lines += ["  " + line for line in terminal_safe(outcome.error).splitlines()]
    numbers = trial_numbers(r, detail=True)
    if numbers:
        lines.append("  " + " · ".join(numbers))
    if prediction:
        lines.append("  " + prediction_line(prediction))
    if checked := check_numbers(r):
        lines.append("  output check: " + terminal_safe(checked))
    if "device" in r:
        machine = machine_line(r)
        if r.get("download_bytes"):
            machine += f" · downloaded {human_bytes(r['download_bytes'])}"
        elif r.get("present_bytes"):  # kept from an earlier trial ([trials] keep_after_trial)
            machine += " · already on disk, nothing downloaded"
        lines.append("  " + terminal_safe(machine))
    if outcome.status == SUCCEEDED:
        lines.append("  prompt: " + terminal_safe(prompt).replace("\n", " "))
        lines += ["", terminal_safe(r.get("text", ""))]
    return "\n".join(lines)


def trial_json(repo: str, revision: str | None, verdict: str, outcome: TrialOutcome, *, prompt: str,
               max_tokens: int, prediction: dict[str, Any] | None = None) -> dict[str, Any]:
    """One object: how it ended, then the worker's result fields (those known, after a failure), and canrun's
    speed prediction beside the measurement (`speed_prediction`, null when there was none)."""
    return {
        "repo": repo, "revision": revision, "verdict": verdict, "status": outcome.status, "phase": outcome.phase,
        "error": outcome.error, "duration_seconds": round(outcome.duration_seconds, 3), "prompt": prompt,
        "max_tokens": max_tokens, **{k: v for k, v in outcome.result.items() if k != "ok"},
        "speed_prediction": prediction,
    }


def not_run_json(repo: str, revision: str | None, verdict: str | None, status: str, error: str) -> dict[str, Any]:
    """A trial that never started: REFUSED (`verdict` says why, or the limits did) or UNCHECKED (no verdict).
    `reason` is the older name of `error`, kept for scripts that read it."""
    return {"repo": repo, "revision": revision, "verdict": verdict, "status": status, "phase": CHECK_PHASE,
            "error": error, "reason": error}


def terminal_safe(text: str) -> str:
    """Text a model (or its error) produced, shown verbatim except control characters: an escape sequence in
    generated text must not drive the user's terminal."""
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else "�" for ch in text)
