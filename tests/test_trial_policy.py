"""Whether a trial may run (pure), and what a finished trial says about mlx_lm.load()."""

from __future__ import annotations

import pytest

from bot.core.trial_policy import GB, TrialLimitsPolicy, loaded_from, refusal
from bot.core.verdicts import MemoryFit, Verdict

LIMITS = TrialLimitsPolicy(max_download_bytes=10 * GB, max_memory_bytes=12 * GB, min_free_disk_bytes=20 * GB)


def loads(weights: int = 4 * GB, need: int = 5 * GB) -> Verdict:
    return Verdict("org/m", "loads", weights_bytes=weights, memory={"as_is": MemoryFit(need, 16 * GB, "fits")})


def test_a_small_loadable_model_with_room_may_run():
    assert refusal(loads(), LIMITS, disk_available_bytes=100 * GB) is None


@pytest.mark.parametrize("verdict, disk, words", [
    (Verdict("org/m", "remote_code", reasons=["needs the repo's own code"]), 100 * GB, "needs the repo's own code"),
    (Verdict("org/m", "unsupported_weights"), 100 * GB, "`unsupported_weights`"),
    (Verdict("org/m", "loads"), 100 * GB, "size of the weights is unknown"),
    (loads(weights=11 * GB), 100 * GB, "download limit"),
    (loads(need=13 * GB), 100 * GB, "of memory"),
    (loads(weights=4 * GB), 23 * GB, "free on disk"),  # 23 - 4 leaves 19 GB, under the 20 GB floor
])
def test_refusals_name_the_reason(verdict, disk, words):
    assert words in refusal(verdict, LIMITS, disk_available_bytes=disk)


@pytest.mark.parametrize("status, phase, reached_generate, reported, expected", [
    ("succeeded", "generate", True, False, True),
    ("cancelled", "generate", True, False, True),  # it got to generate: load() had worked
    ("timed_out", "generate", True, False, True),
    ("failed", "load", False, True, False),  # mlx-lm raised while loading
    ("failed", "load", False, False, None),  # killed while loading (out of memory, a signal): no answer
    ("failed", "download", False, True, None),
    ("cancelled", "load", False, False, None),
    ("timed_out", "load", False, False, None),
])
def test_only_load_itself_says_no(status, phase, reached_generate, reported, expected):
    assert loaded_from(status, phase, reached_generate, reported) is expected
