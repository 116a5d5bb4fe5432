"""Trial -> embed: queued / running with a progress bar / finished with mlx-lm's own numbers or error."""

from __future__ import annotations

import discord

from bot.discord import safe
from bot.render.output_check import broken_line, check_numbers, looks_broken, short_check
from bot.render.progress import PHASE_WORDS, bar, share
from bot.render.speed import prediction_line
from bot.core.repo_id import HUB_URL
from bot.core.speed import decode_tps
from bot.core.units import human_bytes
from bot.render.trial_facts import machine_line, trial_numbers
from bot.services.trial_queue import Trial
from bot.core.trial_outcome import TrialProgress

STATUS_LINES = {
    "succeeded": "✅ `mlx_lm.load()` worked and the model generated text.",
    "cancelled": "🛑 Cancelled.",
    "timed_out": "⏱️ Stopped: the {phase} phase ran past its time limit.",
    "expired": "⌛ Expired: it waited in the queue too long.",
}
COLORS = {"succeeded": discord.Color.green(), "failed": discord.Color.red(), "queued": discord.Color.light_grey()}
BROKEN_COLOR = discord.Color.orange()
LIST_MARKS = {"succeeded": "✅", "failed": "❌", "cancelled": "🛑", "timed_out": "⏱️", "expired": "⌛"}


def progress_bar(done: int, total: int, width: int = 16) -> str:
    return f"{bar(done, total, width)} {share(done, total):.0%}"


def trial_embed(trial: Trial, progress: TrialProgress | None = None, *, position: tuple[int, float] | None = None,
                hub_url: str = HUB_URL) -> discord.Embed:
    embed = discord.Embed(
        title=safe.clip(f"🧪 Trial #{trial.id}: {trial.repo_id}", safe.TITLE),
        url=safe.safe_url(f"{hub_url}/{trial.repo_id}"),
        color=BROKEN_COLOR if looks_broken(trial.result or {}) else COLORS.get(trial.status, discord.Color.blurple()),
    )
    lines = [f"Asked by <@{trial.requested_by}>"]
    if trial.status == "queued":
        ahead, eta = position or (0, 0.0)
        lines.append(f"⏳ Queued: {ahead} trial{'s' if ahead != 1 else ''} ahead, starts in about {_minutes(eta)}.")
    elif trial.status == "running":
        lines.append(_phase_line(progress.phase if progress else trial.phase))
        if progress and progress.phase == "download" and progress.bytes_total:
            lines.append(f"`{progress_bar(progress.bytes_done, progress.bytes_total)}` "
                         f"{human_bytes(progress.bytes_done)} of {human_bytes(progress.bytes_total)}")
        if progress and progress.phase == "generate" and progress.tokens:
            lines.append(f"{progress.tokens} tokens so far")
    elif trial.status == "failed":
        lines.append(f"❌ Failed while {_phase_word(trial.phase)}.")
    else:
        lines.append(STATUS_LINES[trial.status].format(phase=trial.phase or "?"))
    if broken := broken_line(trial.result or {}):
        lines.append(f"⚠️ {safe.escape(broken)}")
    if trial.cancelled_by:
        lines.append(f"Cancelled by <@{trial.cancelled_by}>.")
    embed.description = safe.clip("\n".join(lines), safe.DESCRIPTION)

    if trial.error and trial.status != "cancelled":
        embed.add_field(name="Error", value=_code_block(trial.error, safe.FIELD_VALUE), inline=False)
    r = trial.result or {}
    if trial.status == "succeeded" or r.get("load_seconds") is not None:
        value = " · ".join(trial_numbers(r)) or "none"
        if r.get("speed_prediction"):  # canrun's estimate beside the measurement: the group sees it learn
            value += "\n" + prediction_line(r["speed_prediction"])
        embed.add_field(name="Numbers", value=value, inline=False)
        if checked := check_numbers(r):
            embed.add_field(name="Output check", value=safe.clip(safe.escape(checked), safe.FIELD_VALUE), inline=False)
        embed.add_field(name="Machine", value=safe.clip(machine_line(r, safe.escape), safe.FIELD_VALUE), inline=False)
    if r.get("text"):
        embed.add_field(name=f"Generated ({r.get('generation_tokens', '?')} tokens)",
                        value=_code_block(r["text"], safe.FIELD_VALUE), inline=False)
    embed.set_footer(text=safe.clip(f"prompt: {trial.prompt} · max {trial.max_tokens} tokens", safe.FOOTER))
    return safe.fit_embed(embed)


def trial_list_line(t: Trial) -> str:
    """One trial in /trials: how it ended, its speed or error, and whether its output looked broken."""
    r = t.result or {}
    decoded = decode_tps(r)
    detail = f"{decoded:.1f} tok/s" if decoded else (t.error or t.status)
    detail = safe.escape(safe.clip(str(detail).splitlines()[0] if detail else "", 120))
    if checked := short_check(t.perplexity, t.printable_share, t.looks_broken):
        detail += f" · {'⚠️ ' if t.looks_broken else ''}{safe.escape(checked)}"
    mark = "⚠️" if t.looks_broken else LIST_MARKS.get(t.status, "•")
    return f"{mark} #{t.id} **{safe.escape(t.repo_id)}**: {detail} <t:{int(t.finished_at or t.created_at)}:R>"


def _code_block(text: str, limit: int) -> str:
    """Text shown verbatim: fences inside it are broken so it cannot end the block early."""
    body = str(text).replace("```", "ˋˋˋ")
    body = safe.clip(body, limit - 8)
    return f"```\n{body}\n```"


def _phase_line(current: str | None) -> str:
    marks, seen = [], False
    for key, word in PHASE_WORDS.items():
        if key == current:
            marks.append(f"▶️ **{word}**")
            seen = True
        else:
            marks.append(f"⬜ {word}" if seen or current is None else f"✅ {word}")
    return "✅ verdict · " + " · ".join(marks)


def _phase_word(phase: str | None) -> str:
    return PHASE_WORDS.get(phase or "", "starting")


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    return f"{round(seconds / 60)} min"
