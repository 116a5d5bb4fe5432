"""The trial embed's pieces shared with the terminal renderer: the bar and the phase words."""

from __future__ import annotations

from bot.discord.trial_render import progress_bar, trial_embed
from bot.services.trial_queue import Trial
from bot.core.trial_outcome import TrialProgress


def test_progress_bar_shows_the_share_done():
    assert progress_bar(50, 100, 10) == "█████░░░░░ 50%"
    assert progress_bar(0, 0, 4) == "░░░░ 0%"  # total unknown yet
    assert progress_bar(150, 100, 4) == "████ 100%"


def test_running_trial_marks_the_phases_done_current_and_to_come():
    trial = Trial(7, "org/m", None, 1, 1, 2, "hi", 8, "running", 0.0, phase="load")
    text = trial_embed(trial, TrialProgress("load")).description
    assert "✅ downloading · ▶️ **loading** · ⬜ generating" in text
