"""The prediction game over the store: placements, locks, rounds, settlement, seasons, leaderboard, stats.

One module per job (records, sightings, placing, settlement, rounds, seasons, standings and their upkeep);
this package exports
their public names, so callers write `from bot.services import predictions as game` and `game.settle_repo(...)`.

How the bot drives it (every write is one transaction; nothing here knows Discord):
- `/predict`: place_prediction (outside rounds round_id=None; a round's buttons pass its id).
- `/canrun` of a repo: after recording the verdict, settle_repo(..., source="verdict").
- a trial: lock_repo when it starts (every guild); when it ends, settle_repo(None, ..., source="trial") if it
  judged load(), then unlock_repo (predictions left locked by a trial that could not tell reopen).
- rounds: open_round -> place_prediction(round_id=...) -> close_round -> reveal_round; void_round_repo.
The caller decides an outcome's source: a trial result when there is one, else the static verdict.

Rules and choices:
- Peeked: a placement or change made after the member saw the repo's answer (any sighting source, any guild)
  is marked peeked for good; it settles but never scores (points NULL) and is left out of every median.
- Relative points: a member's points minus the median points of the scoring predictions in the same group:
  same guild, same repo and same round (outside rounds, all outside-round predictions on the repo). A round is
  one question put to everyone at once, so its results do not move when the repo is settled again later, and
  voiding a round's repo touches no other prediction. Outside rounds the group grows with each settlement and
  its relative points are recomputed then.
- Seasons: a prediction belongs to the season active at the moment it first settles (its settlement time),
  none if no season is active then; a re-settle keeps that season.
- Re-settle: a verdict-based settlement is provisional. The first trial result of the repo after it settles
  it for good: if the trial agrees, settled_by becomes 'trial' ("confirmed", points unchanged); if not, the
  prediction is re-scored once (resettled = 1, "resettled" in its history). Trial-based settlements never
  change, so a prediction re-settles at most once whatever trials follow.
- canrun's forecast (forecasts.py): one per group, made when a round opens or a /predict is placed, from its
  verdict and its track record (core/canrun_forecast.py); settled, confirmed and re-settled with the group by the
  same rules. It is not a member: it never enters a median, a standing or a rank. Each scoring prediction keeps
  vs_canrun, its points minus canrun's in the group (NULL where canrun made none).
- Leaderboard order: total points (hundredths) descending; ties go to the member who reached that total
  first, i.e. whose latest scoring settlement (max settled_at in the scope; a re-settle counts as a
  settlement) is earliest; then the lower user id. Ranks are 1, 2, 3, ... with no shared ranks. Members with
  fewer than min_settled scoring predictions in the scope are not listed and take no rank.
"""

from __future__ import annotations

from bot.services.predictions.records import (
    ALL_TIME, MAX_ROUND_REPOS, SOURCES, CanrunForecastRow, CanrunStanding, HistoryEntry, LeaderboardPage, LeaderboardRow, MemberRoundScore,
    MemberStats, Prediction, Refused, Round, RoundRepo, RoundResults, Season, Settlement, Source,
)
from bot.services.predictions.sightings import (
    VERDICT_SIGHTINGS, SeenCallable, SightingSource, seen_at, shown_in_guild_at,
)
from bot.services.predictions.placing import (
    get_prediction, lock_repo, place_prediction, prediction_history, repo_locks, unlock_repo,
)
from bot.services.predictions.seasons import active_season, end_season, season_by_name, start_season
from bot.services.predictions.settlement import settle_repo
from bot.services.predictions.upkeep import rebuild_standings
from bot.services.predictions.rounds import (
    close_round, current_round, get_round, latest_round, open_round, reveal_round, round_results,
    void_round_repo,
)
from bot.services.predictions.standings import leaderboard, member_stats
from bot.services.predictions.forecasts import canrun_forecast, has_forecast, record_forecast

__all__ = [
    "ALL_TIME", "MAX_ROUND_REPOS", "SOURCES", "CanrunForecastRow", "CanrunStanding", "HistoryEntry", "LeaderboardPage", "LeaderboardRow",
    "MemberRoundScore", "MemberStats", "Prediction", "Refused", "Round", "RoundRepo", "RoundResults", "Season",
    "Settlement", "Source", "VERDICT_SIGHTINGS", "SeenCallable", "SightingSource", "seen_at", "shown_in_guild_at",
    "get_prediction", "lock_repo", "place_prediction", "prediction_history", "repo_locks", "unlock_repo",
    "active_season", "end_season", "season_by_name", "start_season", "rebuild_standings", "settle_repo",
    "close_round", "current_round", "get_round", "latest_round", "open_round", "reveal_round", "round_results",
    "void_round_repo", "leaderboard", "member_stats", "canrun_forecast", "has_forecast", "record_forecast",
]
