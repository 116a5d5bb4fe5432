"""Benchmark: the trial worker's generate loop against plain mlx-lm's, in one process, on one loaded model.

bench/trial.py compares whole processes (start, import, load, generate); when its generation ratio is off, this
one says whether the worker's loop itself costs anything per token (its progress events, the text it keeps, the
garbage collector switched off), with the process start, the import and the load taken out: the model is loaded
once and both loops run on it, alternated, REPS times each, after one untimed run of each.
  plain   `for r in mlx_lm.stream_generate(...)`: the loop `mlx_lm.generate` runs
  worker  `trial_worker.generate(...)`, reporting to a pipe that a thread drains, as the runner's parent does

Run: `python bench/trial_loop.py` (`--params 100M|1B|3B`, `--reps N`, `--max-tokens N`). The last line is one
JSON object: params, device, reps, max_tokens, {plain,worker}_generation_tps (medians), {plain,worker}_spread,
generation_tps_ratio (worker / plain; target >= 0.95), ratio_best (of each side's best run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
from pathlib import Path

import _common
import mlx_lm

from bench.trial import PROMPT, SIZES
from bot.services import trial_worker
from bot.services.host import device_label
from tests.fakes.tiny_model import params_of, tiny_llama_files, write_model

REPS, MAX_TOKENS = 7, 256


def plain_loop(model, tokenizer, tokens: list[int], max_tokens: int) -> float:
    text = ""
    for last in mlx_lm.stream_generate(model, tokenizer, tokens, max_tokens=max_tokens):
        text += last.text
    return last.generation_tps


def worker_loop(model, tokenizer, max_tokens: int, reporter: trial_worker.Reporter) -> float:
    return trial_worker.generate(model, tokenizer, PROMPT, max_tokens, reporter)["generation_tps"]


def drained_pipe() -> trial_worker.Reporter:
    """A Reporter writing into a pipe whose other end a thread reads, like the runner reading the worker."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    threading.Thread(target=lambda: [None for _ in reader], daemon=True).start()
    return trial_worker.Reporter(os.fdopen(write_fd, "w"))


def main(size: str, reps: int, max_tokens: int) -> dict:
    files = tiny_llama_files(**SIZES[size])
    with tempfile.TemporaryDirectory(prefix="canrun-bench-loop-") as tmp:
        model, tokenizer = mlx_lm.load(str(write_model(Path(tmp), files)))
    tokens = trial_worker.prompt_tokens(tokenizer, PROMPT)
    reporter = drained_pipe()
    sides: dict[str, list[float]] = {"plain": [], "worker": []}
    run = {"plain": lambda: plain_loop(model, tokenizer, tokens, max_tokens),
           "worker": lambda: worker_loop(model, tokenizer, max_tokens, reporter)}
    run["plain"](), run["worker"]()  # untimed: kernels compiled, caches warm
    for i in range(reps):
        for name in ("plain", "worker") if i % 2 == 0 else ("worker", "plain"):
            sides[name].append(run[name]())
    plain, worker = (statistics.median(sides[n]) for n in ("plain", "worker"))
    return {"params": params_of(files), "device": device_label(), "reps": reps,
            "max_tokens": max_tokens, "plain_generation_tps": round(plain, 2), "worker_generation_tps": round(worker, 2),
            "plain_spread": round(_common.spread(sides["plain"]), 3), "worker_spread": round(_common.spread(sides["worker"]), 3),
            "generation_tps_ratio": round(worker / plain, 3),
            "ratio_best": round(max(sides["worker"]) / max(sides["plain"]), 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", choices=sorted(SIZES), default="100M")
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    args = parser.parse_args()
    r = main(args.params, args.reps, args.max_tokens)
    print(f"generate loop on {r['device']}, {r['params'] / 1e6:.0f}M parameters, {r['max_tokens']} tokens, "
          f"{r['reps']} alternated runs per side in one process")
    print(f"  plain mlx-lm {r['plain_generation_tps']:.1f} tok/s (spread {r['plain_spread']:.0%}), "
          f"worker {r['worker_generation_tps']:.1f} tok/s (spread {r['worker_spread']:.0%}): "
          f"ratio {r['generation_tps_ratio']:.3f} (best runs {r['ratio_best']:.3f}; target >= 0.95)")
    print(json.dumps(r))
