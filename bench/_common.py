"""What every benchmark does before it imports canrun, written once.

A benchmark runs as `python bench/NAME.py`, so its own folder is on sys.path: it starts with `import _common`,
which puts the checkout on sys.path (no install needed), and calls `_common.private_hub()` before its imports
when it talks to a (fake) Hugging Face Hub. `make bench` runs every bench/*.py but this one.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


_hf_home: str | None = None


def private_hub() -> None:
    """huggingface_hub reads its environment once, at import: no Xet transfers, no telemetry, and a throwaway
    cache, so a run neither reads nor fills the user's. One cache per process (a benchmark may import another)."""
    global _hf_home
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    _hf_home = _hf_home or tempfile.mkdtemp(prefix="canrun-bench-hf-")
    os.environ["HF_HOME"] = _hf_home


def spread(values: list[float]) -> float:
    """The noise of repeated runs: (max - min) / median. A ratio nearer 1 than this proves nothing."""
    return (max(values) - min(values)) / statistics.median(values)


def paired_ratio(numerators: list[float], denominators: list[float],
                 level: float = 0.9) -> tuple[float, float | None, float | None]:
    """The median of the per-pair ratios numerators[i] / denominators[i], and a distribution-free interval for
    it: (median, low, high). Pair i is two runs made back to back, so drift that moves both (a busy neighbour, a
    slow period) cancels in the pair's ratio, and unlike the spread the interval narrows with more runs. A ratio
    whose whole interval clears a target met it beyond the noise. low and high are None when there are too few
    pairs for the level (fewer than 5 at 90 %)."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]  # median_interval sorts them
    low, high = median_interval(ratios, level)
    return statistics.median(ratios), low, high


def median_interval(values: list[float], level: float = 0.9) -> tuple[float | None, float | None]:
    """The order-statistic confidence interval of a median: [x(k), x(n+1-k)] with the largest k for which
    P(Binomial(n, 1/2) <= k-1) <= (1 - level) / 2. It assumes nothing of the distribution (runs on a GPU host
    come out bimodal). (None, None) when even [min, max] is not wide enough for the level."""
    values, n = sorted(values), len(values)
    tail, k, below = (1 - level) / 2, 0, 0.0  # below: P(Bin(n, 1/2) <= k - 1)
    while k < n // 2:
        below_next = below + math.comb(n, k) / 2**n
        if below_next > tail:
            break
        k, below = k + 1, below_next
    return (values[k - 1], values[n - k]) if k else (None, None)


def hide_torch() -> None:
    """Child processes started after this (trial workers, plain mlx-lm) run without torch, as on a Mac: see
    bench/no_torch/sitecustomize.py. Both sides of a comparison then start alike, and in seconds."""
    folder = str(Path(__file__).resolve().parent / "no_torch")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
