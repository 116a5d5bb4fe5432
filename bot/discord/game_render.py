"""The prediction game -> Discord embeds: round cards, round results, the leaderboard, a member's stats.

Members are shown as <@id> mentions: Discord renders them as names, and allowed_mentions none keeps them silent.
"""

from __future__ import annotations

import discord

from bot.core.failure_kinds import KindAccuracy, weakest
from bot.discord import safe
from bot.services.host import machine_name
from bot.services.predictions import (
    CanrunForecastRow, LeaderboardPage, MemberStats, Prediction, Round, RoundResults, Season,
)
from bot.services.round_reveals import RevealPlan

CONFIDENCE_CHOICES = (50, 60, 70, 80, 90, 95, 99)
WILL_LOAD = {True: "loads", False: "won't load"}
SOURCE_NOTE = {"trial": f"by a real trial on {machine_name()}", "verdict": "by canrun's static verdict"}


def points(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}".replace("+0.00", "0.00")


def whole_lines(rows: list[str], limit: int) -> str:
    """As many whole rows as fit in `limit` characters, then "… and N more" (a cut row could break a mention)."""
    shown: list[str] = []
    for i, row in enumerate(rows):
        more = f"\n… and {len(rows) - i} more"
        if len("\n".join([*shown, row])) + (len(more) if i < len(rows) - 1 else 0) > limit:
            return "\n".join(shown) + more
        shown.append(row)
    return "\n".join(shown)


def prediction_line(p: Prediction) -> str:
    """What a member said, in their own words back: "loads, 80 % sure"."""
    line = f"{WILL_LOAD[p.will_load]}, {p.confidence} % sure"
    if p.peeked:
        line += " (after seeing the answer, so it will not score)"
    return line


def season_label(season: Season | None) -> str:
    return f"season {safe.escape(season.name)}" if season else "all time"


def round_header(rnd: Round, forecasts: int | None = None) -> discord.Embed:
    """`forecasts`: how many of the round's models canrun forecast (None: all of them)."""
    closes = f"Predictions close <t:{int(rnd.closes_at)}:R>." if rnd.closes_at else \
        "Predictions stay open until a moderator closes the round."
    models = len(rnd.repos)
    if forecasts is None or forecasts >= models:
        canrun = "canrun has made its own forecast on each model, sealed until the reveal: try to beat it."
    elif forecasts:
        canrun = (f"canrun has made its own forecast on {forecasts} of these {models} models, sealed until the "
                  "reveal: try to beat it.")
    else:
        canrun = "canrun could not forecast this round (Hugging Face did not answer): it sits this one out."
    embed = discord.Embed(
        title=f"🎯 Round {rnd.id}: will `mlx_lm.load()` succeed?",
        description=(f"Opened by <@{rnd.opened_by}>. For each model below, press **Loads** or **Won't load**, "
                     f"then pick how sure you are. Confident and right earns the most; confident and wrong costs "
                     f"the most. Don't peek: a prediction made after you checked the model does not score. {canrun}\n"
                     f"{closes}"),
        color=discord.Color.gold(),
    )
    return embed


def round_repo_card(rnd: Round, position: int, hub_url: str) -> discord.Embed:
    repo = rnd.repos[position - 1]
    return discord.Embed(
        title=safe.clip(f"{position}/{len(rnd.repos)} · {repo.repo_id}", safe.TITLE),
        url=safe.safe_url(f"{hub_url}/{repo.repo_id}"),
        description=f"Round {rnd.id}. Will it load in mlx-lm on {machine_name()}?",
        color=discord.Color.gold(),
    )


def canrun_said(f: CanrunForecastRow) -> str:
    """canrun's forecast in words: "canrun: 93% loads (verdict `loads`, 12 of 13 trials agreed) → **+24.51**"."""
    record = (f"{f.agreed} of {f.trials} trials agreed" if f.trials else "no trials yet: its verdict's prior")
    line = f"canrun: {f.p_loads:.0%} loads (verdict `{f.verdict}`, {record})"
    return line + (f" → **{points(f.points)}**" if f.status == "settled" else "")


def round_results(results: RoundResults, hub_url: str) -> discord.Embed:
    rnd = results.round
    canrun = {f.repo_id: f for f in results.canrun}
    lines = []
    for repo in rnd.repos:
        name = safe.link(repo.repo_id, f"{hub_url}/{repo.repo_id}", safe.REPO_LINK_CHARS)
        if repo.void_reason is not None:
            lines.append(f"🚫 {name}: voided ({safe.escape(safe.clip(repo.void_reason, 200))})")
        elif repo.outcome is None:
            lines.append(f"❔ {name}: not settled")
        else:
            mark = "✅" if repo.outcome else "❌"
            lines.append(f"{mark} {name}: **{WILL_LOAD[repo.outcome]}**, {SOURCE_NOTE[repo.settled_by]}")
            if repo.repo_id in canrun:
                lines.append(f"  🤖 {canrun_said(canrun[repo.repo_id])}")
    embed = discord.Embed(title=f"🎯 Round {rnd.id}: results",
                          description=safe.clip("\n".join(lines), safe.DESCRIPTION), color=discord.Color.gold())
    if results.members:
        rows = [f"{i}. <@{m.user_id}> **{points(m.points)}** (vs group median {points(m.relative_points)}"
                + (f", vs canrun {points(m.vs_canrun)}" if m.vs_canrun is not None else "") + ")"
                + (f", {m.peeked} peeked" if m.peeked else "")
                for i, m in enumerate(results.members, start=1)]
        if results.canrun_points is not None:
            rows = with_canrun_row(rows, [m.points for m in results.members], results.canrun_points,
                                   f"🤖 canrun **{points(results.canrun_points)}** (the baseline, not ranked)")
        embed.add_field(name="Points", value=whole_lines(rows, safe.FIELD_VALUE), inline=False)
    else:
        embed.add_field(name="Points", value="Nobody predicted in this round.", inline=False)
    return safe.fit_embed(embed)


def with_canrun_row(rows: list[str], row_points: list[float], canrun_points: float, canrun_row: str, *,
                    first_page: bool = True, last_page: bool = True) -> list[str]:
    """The members' rows (best first) with canrun's marked row where its points fall: after every member with at
    least as many points (a tie goes to the member). On a page that is not the first, canrun goes there only when
    it falls inside the page; above the first row it belongs to an earlier page (likewise the last page's end)."""
    at = next((i for i, p in enumerate(row_points) if p < canrun_points), len(rows))
    if (at == 0 and not first_page) or (at == len(rows) and not last_page):
        return rows
    return [*rows[:at], canrun_row, *rows[at:]]


def leaderboard(page: LeaderboardPage, season: Season | None, min_settled: int) -> discord.Embed:
    title = f"🏆 Leaderboard, {season_label(season)}"
    if not page.rows:
        text = (f"Nobody has {min_settled} scored predictions here yet." if page.page == 1
                else f"There is no page {page.page}; the last is {page.pages}.")
        return discord.Embed(title=title, description=text, color=discord.Color.gold())
    lines = [f"**{r.rank}.** <@{r.user_id}> **{points(r.points)}** · {r.accuracy:.0%} right of {r.settled}"
             f" · vs median {points(r.relative_points)} · vs canrun {points(r.vs_canrun)}" for r in page.rows]
    if page.canrun is not None:
        c = page.canrun
        lines = with_canrun_row(lines, [r.points for r in page.rows], c.points,
                                f"🤖 canrun **{points(c.points)}** · {c.accuracy:.0%} right of {c.settled}"
                                " · the baseline, not ranked",
                                first_page=page.page == 1, last_page=page.page >= page.pages)
    embed = discord.Embed(title=title, description="\n".join(lines), color=discord.Color.gold())
    embed.set_footer(text=f"Page {page.page} of {page.pages} · {page.members} members with at least "
                          f"{min_settled} scored predictions · ties go to whoever got there first")
    return embed


def member_stats(stats: MemberStats, season: Season | None, min_settled: int) -> discord.Embed:
    embed = discord.Embed(title=safe.clip(f"📈 Stats, {season_label(season)}", safe.TITLE),
                          description=f"<@{stats.user_id}>", color=discord.Color.blurple())
    rank = f"#{stats.rank}" if stats.rank else f"unranked (needs {min_settled} scored predictions)"
    embed.add_field(name="Points", value=f"{points(stats.points)} · {rank}")
    embed.add_field(name="Vs group median", value=points(stats.relative_points))
    embed.add_field(name="Vs canrun", value=f"{points(stats.vs_canrun)} on {stats.vs_canrun_scored} it forecast too"
                    if stats.vs_canrun_scored else "— (no forecast of canrun settled beside yours yet)")
    accuracy = "—" if stats.accuracy is None else f"{stats.accuracy:.0%} ({stats.correct} of {stats.settled})"
    embed.add_field(name="Right", value=accuracy)
    brier = "—" if stats.mean_brier is None else f"{stats.mean_brier:.3f} (0 is perfect, 0.25 is a coin flip)"
    embed.add_field(name="Brier score", value=brier)
    embed.add_field(name="Streak", value=f"{stats.current_streak} now, best {stats.best_streak}")
    embed.add_field(name="Not scored", value=f"{stats.peeked} peeked · {stats.pending} waiting for an answer")
    if stats.by_kind:
        embed.add_field(name="Right, by kind of model", value=by_kind_lines(stats.by_kind), inline=False)
    return embed


def by_kind_lines(kinds: list[KindAccuracy]) -> str:
    """One line per kind of model the member predicted (the gate it tests), the weakest marked."""
    low = weakest(kinds)
    return "\n".join(f"{k.kind}: {k.accuracy:.0%} ({k.correct} of {k.count})"
                     + (" ← the gate your intuition misses most" if k is low else "") for k in kinds)


def reveal_plan(round_id: int, plan: RevealPlan) -> str:
    """What the moderator's /round reveal answers: how each repo will be settled."""
    lines = [f"🔒 Round {round_id} is closed. Settling:"]
    lines += [f"• **{safe.escape(r)}** by trial #{t} (the results follow when it ends)" for r, t in plan.trials.items()]
    lines += [f"• **{safe.escape(r)}** by canrun's static verdict"
              + (f" (no trial: {safe.rich(plan.no_trial[r].rstrip('.'))})" if r in plan.no_trial else "")
              for r in plan.verdicts]
    lines += [f"• **{safe.escape(r)}** voided: {safe.escape(why)}" for r, why in plan.voided.items()]
    lines += [f"• **{safe.escape(r)}**: Hugging Face could not be reached; try `/round reveal` again"
              for r in plan.unknown]
    return safe.clip("\n".join(lines), safe.CONTENT)
