"""canrun's record against trials -> the /canrun-record embed (the sentences are bot/render/canrun_record.py's)."""

from __future__ import annotations

import discord

from bot.core.canrun_record import CanrunRecord, JudgedTrial, one_line
from bot.discord import safe
from bot.discord.game_render import whole_lines
from bot.render.canrun_record import EMPTY, forecast_words, summary
from bot.services.host import machine_name

VERSIONS_SHOWN = 10  # the newest mlx-lm versions; each is a field
MISS_ERROR_CHARS = 150


def record_embed(rec: CanrunRecord, hub_url: str = "https://huggingface.co") -> discord.Embed:
    embed = discord.Embed(title="🎯 canrun's record against trials", color=discord.Color.gold())
    if not rec.overall.trials:
        embed.description = EMPTY
        return embed
    embed.description = safe.clip(
        f"Against the trials on {machine_name()}: {safe.escape(summary(rec.overall))}.\n"
        f"{safe.escape(forecast_words())} A miss, a verdict the trial proved wrong, is logged for the bot's owner "
        "as a bug report.", safe.DESCRIPTION)
    for v in rec.versions[:VERSIONS_SHOWN]:
        rows = [safe.escape(summary(v))]
        if v.misses:
            rows.append(f"Latest misses ({v.missed} in all):" if v.missed > len(v.misses) else "Latest misses:")
        rows += [_miss_row(t, hub_url) for t in v.misses]
        embed.add_field(name=safe.clip(f"mlx-lm {v.mlx_lm_version}", safe.FIELD_NAME),
                        value=whole_lines(rows, safe.FIELD_VALUE), inline=False)
    if len(rec.versions) > VERSIONS_SHOWN:
        embed.set_footer(text=f"{len(rec.versions) - VERSIONS_SHOWN} older mlx-lm versions not shown "
                              "(`canrun record` in a terminal lists them all)")
    return safe.fit_embed(embed)


def _miss_row(t: JudgedTrial, hub_url: str) -> str:
    name = t.repo_id + (f"@{t.revision}" if t.revision else "")
    repo = safe.link(name, f"{hub_url}/{t.repo_id}", safe.REPO_LINK_CHARS)
    outcome = "it loaded" if t.loaded else \
        f"load() failed: {safe.code(one_line(t.error, MISS_ERROR_CHARS) or 'no message', MISS_ERROR_CHARS)}"
    return f"• #{t.trial_id} {repo} <t:{int(t.finished_at)}:R>: verdict {safe.code(t.verdict)}, {outcome}"
