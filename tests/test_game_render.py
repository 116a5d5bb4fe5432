"""Game embeds stay within Discord's limits without cutting a row (a cut row can break a <@id> mention)."""

from __future__ import annotations

from bot.discord import safe
from bot.discord.game_render import round_results, whole_lines
from bot.services.predictions import MemberRoundScore, Round, RoundRepo, RoundResults


def test_whole_lines_keeps_rows_whole_and_counts_the_rest():
    rows = [f"{i}. <@{10**17 + i}> **+24.00**" for i in range(100)]
    text = whole_lines(rows, 300)
    assert len(text) <= 300
    kept = text.splitlines()[:-1]
    assert kept == rows[:len(kept)] and text.endswith(f"… and {100 - len(kept)} more")
    assert whole_lines(rows[:3], 300) == "\n".join(rows[:3])


def test_round_results_for_a_big_group_fit_the_field():
    rnd = Round(1, 1, 2, 3, "revealed", 0.0, None, 1.0, 2.0, (RoundRepo("org/m", 1, True, "trial", None),))
    members = [MemberRoundScore(10**17 + i, -73.01, -97.5, 1, 0) for i in range(200)]
    embed = round_results(RoundResults(rnd, members), "https://huggingface.co")
    value = embed.fields[0].value
    assert len(value) <= safe.FIELD_VALUE and value.endswith("more")
    assert all(line.count("<@") == line.count(">") for line in value.splitlines())
