"""Verdict -> Discord embed and link buttons. Everything from a repo or GitHub goes through bot.discord.safe."""

from __future__ import annotations

import discord

from bot.core.engine import HostMemory
from bot.core.verdicts import LOADS, Verdict
from bot.discord import safe
from bot.render import speed as speed_words
from bot.render.verdict_facts import verdict_facts
from bot.services.host import machine_name

COLORS = {LOADS: discord.Color.green(), "gated": discord.Color.gold(), "not_found": discord.Color.light_grey()}
FIT_MARKS = {"fits": "🟢", "tight": "🟡", "too_large": "🔴"}


def verdict_embed(v: Verdict, host: HostMemory, *, hub_url: str, cached_note: str | None = None,
                  suggestions_pending: bool = False) -> discord.Embed:
    f = verdict_facts(v, host)
    embed = discord.Embed(
        title=safe.clip(f"{f.mark} {f.headline}", safe.TITLE),
        url=safe.safe_url(f"{hub_url}/{v.repo}"),
        color=COLORS.get(f.verdict, discord.Color.red()),
        description=safe.clip(
            f"**{safe.escape(f.name)}**\n" + "\n".join(f"• {safe.rich(r)}" for r in f.reasons), safe.DESCRIPTION
        ),
    )
    if f.model_type:
        target = safe.code(f.target, 140) if f.target else "no module in this mlx-lm"
        arch = f"{safe.code(f.model_type)} → {target}"
        if f.remapped_by:
            arch += f"\nremapped by {safe.code(f.remapped_by)}"
        embed.add_field(name="Architecture", value=safe.clip(arch, safe.FIELD_VALUE), inline=True)
    size = [s for s in (f.quantization and safe.escape(f.quantization), f.weights and f"{f.weights} of weights",
                        f.params and f"{f.params} parameters") if s]
    if size:
        embed.add_field(name="Size", value=safe.clip("\n".join(size), safe.FIELD_VALUE), inline=True)
    if f.memory:
        lines = [f"{FIT_MARKS[m.status]} {m.label}: {m.need}, {m.words}" for m in f.memory]
        embed.add_field(name=f"Memory on {machine_name()} ({f.budget})",
                        value=safe.clip("\n".join(lines), safe.FIELD_VALUE), inline=False)
    if f.fixes:
        embed.add_field(name="What makes it fit", value=_join_within([f"• {safe.rich(fix)}" for fix in f.fixes],
                                                                     safe.FIELD_VALUE), inline=False)
    if f.speed:
        lines = [safe.escape(line) for line in f.speed_lines]
        lines.append(f"-# {safe.escape(speed_words.label_words(f.speed))}, at {f.speed.context_tokens} tokens of "
                     f"context; prompt of {f.speed.prompt_tokens} tokens")
        embed.add_field(name=f"Speed on {machine_name()}", value=safe.clip("\n".join(lines), safe.FIELD_VALUE),
                        inline=False)
    if f.suggestions:
        per = safe.FIELD_VALUE // max(1, min(len(f.suggestions), 5)) - 2
        lines = [f"• {safe.link(s.title, s.url, per)}" + (f" ({safe.escape(s.detail)})" if s.detail else "")
                 for s in f.suggestions[:5]]
        embed.add_field(name="What you can do", value=_join_within(lines, safe.FIELD_VALUE), inline=False)
    elif suggestions_pending:
        embed.add_field(name="What you can do", value="Looking for conversions and pull requests…", inline=False)
    if f.unavailable:
        embed.add_field(name="Suggestions", value=f"{' and '.join(f.unavailable)} did not answer in time.",
                        inline=False)
    footer = f"mlx-lm {f.mlx_lm_version}"
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
