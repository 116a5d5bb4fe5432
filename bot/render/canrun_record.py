"""canrun's record against trials in words (`canrun record`, and the sentences /canrun-record shares) and as JSON."""

from __future__ import annotations

import time
from typing import Any

from bot.core.canrun_record import VERDICT_P_LOADS, CanrunRecord, JudgedTrial, Record, one_line
from bot.render.trial_result import terminal_safe

EMPTY = ("No trial has told whether load() succeeds yet: the bot's trials (/trial, and rounds revealed by trial) "
         "build this record.")


def summary(r: Record) -> str:
    """"8 trials, the verdict matched 7 (88 %), Brier score 0.115; 1 loaded but its output looked broken"."""
    text = (f"{r.trials} trial{'' if r.trials == 1 else 's'}, the verdict matched {r.matched} ({r.share:.0%}), "
            f"Brier score {r.brier:.3f}")
    if r.looked_broken:
        text += f"; {r.looked_broken} loaded but {'its' if r.looked_broken == 1 else 'their'} output looked broken"
    return text


def forecast_words() -> str:
    """How the Brier score reads a verdict: as a forecast that load() succeeds."""
    by_p: dict[float, list[str]] = {}
    for verdict, p in VERDICT_P_LOADS.items():
        by_p.setdefault(p, []).append(verdict)
    chances = [f"{p:.0%} for {_and(verdicts)}" for p, verdicts in sorted(by_p.items(), reverse=True)]
    return (f"The Brier score reads a verdict as the chance that load() succeeds ({'; '.join(chances)}): "
            "0 is perfect, 0.25 a coin flip.")


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def miss_outcome(t: JudgedTrial, error_chars: int = 300) -> str:
    """What the trial showed, against the verdict: "load() failed: <mlx-lm's first line>" or "it loaded"."""
    if t.loaded:
        return "it loaded"
    return f"load() failed: {one_line(t.error, error_chars) or 'no message'}"


def render_record(rec: CanrunRecord) -> str:
    if not rec.overall.trials:
        return EMPTY
    lines = [f"canrun's record against the bot's trials: {summary(rec.overall)}.", forecast_words()]
    for v in rec.versions:
        lines += ["", f"mlx-lm {v.mlx_lm_version}: {summary(v)}"]
        if v.misses:
            more = f" ({v.missed} in all)" if v.missed > len(v.misses) else ""
            lines.append(f"  latest misses{more}:")
        for t in v.misses:
            where = t.repo_id + (f"@{t.revision}" if t.revision else "")
            lines.append(f"  #{t.trial_id} {where} ({_when(t.finished_at)}): verdict {t.verdict}, "
                         + terminal_safe(miss_outcome(t)))
    return "\n".join(lines)


def record_json(rec: CanrunRecord) -> dict[str, Any]:
    return {**_record_json(rec.overall), "p_loads": dict(VERDICT_P_LOADS),
            "versions": [{"mlx_lm_version": v.mlx_lm_version, **_record_json(v),
                          "misses": [_miss_json(t) for t in v.misses]} for v in rec.versions]}


def _record_json(r: Record) -> dict[str, Any]:
    return {"trials": r.trials, "matched": r.matched, "share": r.share, "brier": r.brier, "missed": r.missed,
            "looked_broken": r.looked_broken}


def _miss_json(t: JudgedTrial) -> dict[str, Any]:
    return {"trial_id": t.trial_id, "repo": t.repo_id, "revision": t.revision, "verdict": t.verdict,
            "loaded": t.loaded, "error": t.error, "finished_at": t.finished_at, "mlx_lm_version": t.mlx_lm_version}


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
