"""Verdict -> Discord embed and link buttons. Everything from a repo or GitHub goes through bot.discord.safe."""

from __future__ import annotations

import discord

from bot.core.engine import HostMemory
from bot.core.verdicts import LOADS, Verdict
from bot.discord import safe
from bot.render import speed as speed_words
from bot.core.units import FIT_WORDS, MEMORY_LABELS, human_bytes, human_params
from bot.services.host import machine_name

COLORS = {LOADS: discord.Color.green(), "gated": discord.Color.gold(), "not_found": discord.Color.light_grey()}
FIT_MARKS = {"fits": "🟢", "tight": "🟡", "too_large": "🔴"}


def verdict_embed(v: Verdict, host: HostMemory, *, hub_url: str, cached_note: str | None = None,
                  suggestions_pending: bool = False) -> discord.Embed:
    mark = "✅" if v.verdict == LOADS else "❌"
    name = v.repo + (f"@{v.revision}" if v.revision else "")
    embed = discord.Embed(
        title=safe.clip(f"{mark} {v.headline}", safe.TITLE),
        url=safe.safe_url(f"{hub_url}/{v.repo}"),
        color=COLORS.get(v.verdict, discord.Color.red()),
        description=safe.clip(
            f"**{safe.escape(name)}**\n" + "\n".join(f"• {safe.rich(r)}" for r in v.reasons), safe.DESCRIPTION
        ),
    )
    if v.model_type:
        target = safe.code(f"mlx_lm.models.{v.module}", 140) if v.module else "no module in this mlx-lm"
        arch = f"{safe.code(v.model_type)} → {target}"
        if v.remapped_by:
            arch += f"\nremapped by {safe.code(v.remapped_by)}"
        embed.add_field(name="Architecture", value=safe.clip(arch, safe.FIELD_VALUE), inline=True)
    size = [s for s in (
        safe.escape(v.quantization) if v.quantization else None,
        f"{human_bytes(v.weights_bytes)} of weights" if v.weights_bytes is not None else None,
        f"{human_params(v.params)} parameters" if v.params else None,
    ) if s]
    if size:
        embed.add_field(name="Size", value=safe.clip("\n".join(size), safe.FIELD_VALUE), inline=True)
    if v.memory:
        lines = [f"{FIT_MARKS[m.status]} {MEMORY_LABELS[k]}: ~{human_bytes(m.need_bytes)}, {FIT_WORDS[m.status]}"
                 for k, m in v.memory.items()]
        embed.add_field(name=f"Memory on {machine_name()} ({human_bytes(host.budget_bytes)})",
                        value=safe.clip("\n".join(lines), safe.FIELD_VALUE), inline=False)
    if v.fixes:
        embed.add_field(name="What makes it fit", value=_join_within([f"• {safe.rich(f['text'])}" for f in v.fixes],
                                                                     safe.FIELD_VALUE), inline=False)
    if v.speed and v.speed.variants:
        lines = [safe.escape(line) for line in speed_words.generation_lines(v.speed)]
        lines.append(f"-# {safe.escape(speed_words.label_words(v.speed))}, at {v.speed.context_tokens} tokens of "
                     f"context; prompt of {v.speed.prompt_tokens} tokens")
        embed.add_field(name=f"Speed on {machine_name()}", value=safe.clip("\n".join(lines), safe.FIELD_VALUE),
                        inline=False)
    if v.suggestions:
        per = safe.FIELD_VALUE // max(1, min(len(v.suggestions), 5)) - 2
        lines = [f"• {safe.link(s.title, s.url, per)}" + (f" ({safe.escape(s.detail)})" if s.detail else "")
                 for s in v.suggestions[:5]]
        embed.add_field(name="What you can do", value=_join_within(lines, safe.FIELD_VALUE), inline=False)
    elif suggestions_pending:
        embed.add_field(name="What you can do", value="Looking for conversions and pull requests…", inline=False)
    if v.suggestions_unavailable:
        embed.add_field(name="Suggestions", value=f"{' and '.join(v.suggestions_unavailable)} did not answer in time.",
                        inline=False)
    footer = f"mlx-lm {v.mlx_lm_version}"
    if cached_note:
        footer += f" · {cached_note}"
    embed.set_footer(text=safe.clip(footer, safe.FOOTER))
    return safe.fit_embed(embed)


def _join_within(lines: list[str], limit: int) -> str:
    out: list[str] = []
    for line in lines:
        if len("\n".join(out + [line])) > limit:
            break
        out.append(line)
    return "\n".join(out) or safe.clip(lines[0], limit)


def verdict_view(v: Verdict, *, hub_url: str) -> discord.ui.View:
    """Link buttons: the model page and the best suggestion."""
    view = discord.ui.View(timeout=None)
    page = safe.safe_url(f"{hub_url}/{v.repo}")
    if page and v.verdict != "not_found":
        view.add_item(discord.ui.Button(label="Model page", url=page))
    for s in v.suggestions[:1]:
        url = safe.safe_url(s.url)
        if url:
            view.add_item(discord.ui.Button(label=safe.clip(s.title, safe.BUTTON_LABEL), url=url))
    return view
