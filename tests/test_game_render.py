"""Game embeds stay within Discord's limits without cutting a row (a cut row can break a <@id> mention)."""

from __future__ import annotations

from bot.discord import safe
from bot.discord.game_render import round_header, round_results, whole_lines, with_canrun_row
from bot.services.predictions import CanrunForecastRow, MemberRoundScore, Round, RoundRepo, RoundResults


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


def test_canruns_row_goes_where_its_points_fall_and_only_on_its_page():
    rows, pts = ["a", "b", "c"], [30.0, 20.0, 10.0]
    assert with_canrun_row(rows, pts, 25.0, "C") == ["a", "C", "b", "c"]
    assert with_canrun_row(rows, pts, 20.0, "C") == ["a", "b", "C", "c"]  # a tie goes to the member
    assert with_canrun_row(rows, pts, 99.0, "C") == ["C", "a", "b", "c"]
    assert with_canrun_row(rows, pts, -9.0, "C") == ["a", "b", "c", "C"]
    assert with_canrun_row(rows, pts, 99.0, "C", first_page=False) == rows  # it belongs to an earlier page
    assert with_canrun_row(rows, pts, -9.0, "C", last_page=False) == rows  # or to a later one
    assert with_canrun_row(rows, pts, 15.0, "C", first_page=False, last_page=False) == ["a", "b", "C", "c"]


def test_round_results_with_canruns_row_keep_every_row_whole():
    rnd = Round(1, 1, 2, 3, "revealed", 0.0, None, 1.0, 2.0, (RoundRepo("org/m", 1, True, "trial", None),))
    members = [MemberRoundScore(10**17 + i, 24.0 - i, 0.0, 1, 0, 1.0) for i in range(200)]
    canrun = [CanrunForecastRow("org/m", 1, "loads", 0.95, 12, 11, 0.9231, "settled", True, "trial", 24.41, False)]
    embed = round_results(RoundResults(rnd, members, canrun), "https://huggingface.co")
    assert "🤖 canrun: 92% loads (verdict `loads`, 11 of 12 trials agreed) → **+24.41**" in embed.description
    value = embed.fields[0].value
    assert len(value) <= safe.FIELD_VALUE and value.splitlines()[0] == "🤖 canrun **+24.41** (the baseline, not ranked)"
    assert all(line.count("<@") == line.count(">") for line in value.splitlines())


def test_the_round_header_promises_only_the_forecasts_canrun_made():
    repos = tuple(RoundRepo(f"org/m{i}", i, None, None, None) for i in range(1, 4))
    rnd = Round(1, 1, 2, 3, "open", 0.0, None, None, None, repos)
    assert "forecast on each model" in round_header(rnd, 3).description
    assert "forecast on 2 of these 3 models" in round_header(rnd, 2).description
    quiet = round_header(rnd, 0).description
    assert "could not forecast this round" in quiet and "forecast on" not in quiet


def test_round_results_name_long_repos_in_full():
    longest = "an-org-name-of-forty-two-characters-at-all/" + "a_model_name" * 4  # 91 characters, underscores
    repos = tuple(RoundRepo(r, i, True, "trial", None) for i, r in
                  enumerate(("mlx-community/DeepSeek-R1-Distill-Qwen-32B-4bit", longest), start=1))
    rnd = Round(1, 1, 2, 3, "revealed", 0.0, None, 1.0, 2.0, repos)
    embed = round_results(RoundResults(rnd, []), "https://huggingface.co")
    assert "[mlx-community/DeepSeek-R1-Distill-Qwen-32B-4bit](https://huggingface.co/mlx-community/" in \
        embed.description
    assert f"[{safe.escape(longest)}](https://huggingface.co/{longest})" in embed.description
