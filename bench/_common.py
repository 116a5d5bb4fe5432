"""What every benchmark does before it imports canrun, written once.

A benchmark runs as `python bench/NAME.py`, so its own folder is on sys.path: it starts with `import _common`,
which puts the checkout on sys.path (no install needed), and calls `_common.private_hub()` before its imports
when it talks to a (fake) Hugging Face Hub. `make bench` runs every bench/*.py but this one.
"""

from __future__ import annotations

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


def hide_torch() -> None:
    """Child processes started after this (trial workers, plain mlx-lm) run without torch, as on a Mac: see
    bench/no_torch/sitecustomize.py. Both sides of a comparison then start alike, and in seconds."""
    folder = str(Path(__file__).resolve().parent / "no_torch")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
