"""Benchmark: a trial load against plain mlx-lm, and the bot's event loop while the trial runs.

Scenario: a random Llama of about 100M parameters (bf16, real safetensors and tokenizer), built once and served
by the fake hub. One warm-up trial downloads it (timed on its own, never part of the comparison). Then, in
alternation (plain, trial, trial, plain, ...), REPS times each, on the same downloaded files:
  plain  a fresh `python -c` child doing what `mlx_lm.generate` (the command) does: `mlx_lm.load(path)`, the
         prompt through the chat template, and `mlx_lm.generate`'s own loop over `stream_generate`
  trial  canrun's path: `start_trial(...).run(...)` in this process's event loop, i.e. a `canrun trial-worker`
         child (snapshot check against the hub, offline `mlx_lm.load`, `stream_generate`, JSON-lines progress)
Both sides measure inside their child the same way: load seconds around `mlx_lm.load` alone, prompt and
generation tokens/s from mlx-lm's last GenerationResponse, and `mx.get_peak_memory()` after the generation
(reset before the load). Same prompt, same MAX_TOKENS, greedy. Medians over the REPS runs of each side.
Meanwhile a ticker in this event loop sleeps TICK_MS at a time and records how late it wakes up: while a
trial runs, while plain mlx-lm runs in a child (the same CPU contention, without canrun), and on an idle loop
(IDLE_SECONDS before each pair of runs, so that all three see the machine in the same state).

Noise control: each side gets one untimed warm-up run first (page cache, GPU clocks, kernel caches on disk);
both children get the same environment (the worker's allowlisted one, plus HF_HUB_OFFLINE=1 for plain, which
reads a local folder) with USE_TORCH set alike (`--use-torch`); runs alternate between the sides.

Run: `python bench/trial.py` (or `make bench`); options: `--params 100M|1B|3B` (default 100M), `--reps N`
(runs per side, default 6), `--max-tokens N` (default 64), `--use-torch 0|1|unset` (default 0: neither child
sees torch, as on a Mac; USE_TORCH=0, and bench/no_torch for transformers 5, which ignores it), `--prompt-repeat N`
(the prompt N times over, default 1: about 68 tokens; on a GPU their prefill takes a fraction of a second, so
its tokens/s varies by 20 % between runs and a longer prompt measures prefill itself). The last line is one JSON object
with the keys:
  params, weights_bytes, reps, max_tokens, prompt_tokens        scenario (prompt_tokens after the template)
  device, use_torch                                             where it ran (mlx's device name), USE_TORCH
  {plain,trial}_{generation_tps,prompt_tps,load}_spread         noise of each side alone
  download_s, download_bytes                                    the warm-up trial's download phase
  trial_cached_download_s                                       median download phase of the timed trials, files
                                                                  cached: one model_info request, and importing
                                                                  mlx-lm (for its file patterns), about 1 s of it
  {plain,trial}_load_s                                          median seconds of mlx_lm.load
  {plain,trial}_generation_tps, {plain,trial}_prompt_tps        median tokens per second
  {plain,trial}_peak_memory_mb                                  median mx.get_peak_memory(), MiB
  {plain,trial}_wall_s                                          median child process lifetime, start to exit
  trial_output_check_s                                          median seconds of the trial's output check (perplexity
                                                                  pass, after the generation was measured: in
                                                                  trial_wall_s, in no other figure)
  {plain,trial}_generation_tokens                               tokens generated (equal: the same greedy run)
  load_ratio, generation_tps_ratio, prompt_tps_ratio,           trial / plain of the medians; the target is 5 %:
  peak_memory_ratio, wall_ratio                                   tok/s ratios >= 0.95, the others <= 1.05
  within_target                                                 {ratio key: bool}; wall_ratio has no target
  {load,generation_tps,prompt_tps,peak_memory}_ratio_paired     median of the per-pair ratios (run i of each side
                                                                  ran back to back), and its 90 % interval
  {load,generation_tps,prompt_tps,peak_memory}_ratio_interval     (order statistics): [low, high], null under 5 runs
  beyond_noise                                                  {ratio key: bool}: the whole interval meets the target
  runs                                                          {plain, trial: [{load, generation_tps, prompt_tps,
                                                                  peak_memory} of each run, in order]}: to pool
                                                                  several reports' pairs (_common.paired_ratio)
  {load,generation_tps,prompt_tps,peak_memory}_ratio_best       trial / plain of each side's best run
  {load,generation_tps,prompt_tps,peak_memory}_spread           noise: (max - min) / median of one side's runs,
                                                                  the larger of the two sides
  {idle,plain,trial}_lag_{p50,p99,max}_ms                       event-loop lateness of a TICK_MS sleep
  lag_p99_vs_idle, lag_p99_vs_plain                             trial p99 lag / idle p99, / plain p99
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common

_common.private_hub()

from bot.core.trial_outcome import TrialProgress  # noqa: E402
from bot.services.trial_runner import TrialLimits, TrialSpec, start_trial, worker_env  # noqa: E402
from tests.fakes.hub import FakeHub, FakeRepo  # noqa: E402
from tests.fakes.tiny_model import LLAMA_100M, params_of, tiny_llama_files  # noqa: E402

REPO_ID = "bench/llama"
# 6 runs a side: on a shared 2-core machine one run can be 30 % off and the median of 3 still 15 %. 64 new
# tokens keep each bf16 run on the CPU near 11 s (about 7 s of decoding), the whole benchmark under 3 minutes.
REPS, MAX_TOKENS, TICK_MS, IDLE_SECONDS = 6, 64, 10.0, 1.0
# Llama shapes by size (tied embeddings, 32k vocabulary): about 100M, 1.04B and 2.92B parameters.
SIZES = {
    "100M": LLAMA_100M,
    "1B": dict(hidden_size=2048, layers=16, heads=32, kv_heads=8, intermediate=8192, vocab_size=32000),
    "3B": dict(hidden_size=3072, layers=28, heads=24, kv_heads=8, intermediate=8192, vocab_size=32000),
}
TARGET = 0.05  # trial within 5 % of plain mlx-lm
RESPONSIVE_MS = 50.0  # p99 lateness a Discord user cannot notice (an interaction has 3 s to be acknowledged)
PROMPT = ("the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. "
          "how vexingly quick daft zebras jump. can this model load in mlx? it loads, it runs, it generates "
          "tokens on the cpu. attention, rotary embeddings, normalization and feed-forward layers.")

# Plain mlx-lm, as `mlx_lm.generate --prompt P --max-tokens N` runs it (temperature 0: greedy). mlx_lm.generate()
# is a loop over stream_generate() that keeps only the text: the same loop here keeps its last response too,
# which carries the figures. One JSON line on stdout.
PLAIN_SCRIPT = r"""
import json, sys, time
import mlx.core as mx
import mlx_lm

path, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
mx.reset_peak_memory()
started = time.perf_counter()
model, tokenizer = mlx_lm.load(path)
load_seconds = time.perf_counter() - started
if tokenizer.has_chat_template:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
tokens = tokenizer.encode(prompt, add_special_tokens=not tokenizer.has_chat_template)
text = ""
for last in mlx_lm.stream_generate(model, tokenizer, tokens, max_tokens=max_tokens):
    text += last.text
print(json.dumps({"load_seconds": load_seconds, "prompt_tokens": last.prompt_tokens, "prompt_tps": last.prompt_tps,
                  "generation_tokens": last.generation_tokens, "generation_tps": last.generation_tps,
                  "peak_memory_bytes": mx.get_peak_memory()}))
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# ---- event-loop lateness --------------------------------------------------------------------------


async def _tick(stop: asyncio.Event, lags_ms: list[float]) -> None:
    """Sleep TICK_MS over and over; how much later than asked each sleep ends is what a Discord event would wait."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(TICK_MS / 1000)
        lags_ms.append(max(0.0, (time.perf_counter() - started) * 1000 - TICK_MS))


async def with_ticker(coro):
    """Await `coro` while the ticker runs; returns its result and the lateness of every tick (ms)."""
    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(_tick(stop, lags))
    try:
        return await coro, lags
    finally:
        stop.set()
        await ticker


# ---- the two sides --------------------------------------------------------------------------------


async def run_plain(model_dir: Path, env: dict[str, str]) -> tuple[dict, float]:
    """One plain mlx-lm run in a fresh child: its figures and its lifetime (s)."""
    env = {**env, "HF_HUB_OFFLINE": "1"}  # a local folder: nothing to fetch
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PLAIN_SCRIPT, str(model_dir), PROMPT, str(MAX_TOKENS), env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"plain mlx-lm failed ({process.returncode}): {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), wall


async def run_trial(spec: TrialSpec) -> tuple[dict, float, dict[str, float]]:
    """One trial through canrun's runner: the worker's result, its lifetime (s) and when each phase began
    (seconds after the start, as the runner saw the events)."""
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def on_progress(progress: TrialProgress) -> None:  # the bot edits a Discord message here
        phases.setdefault(progress.phase, time.perf_counter() - started)

    outcome = await start_trial(spec, TrialLimits()).run(on_progress)
    if outcome.status != "succeeded":
        raise RuntimeError(f"trial {outcome.status} in {outcome.phase}: {outcome.error}")
    return outcome.result, outcome.duration_seconds, phases


# ---- scenario -------------------------------------------------------------------------------------

# name in the JSON, the field of a run's result, the key of the median value, higher is better, scale of the value
METRICS = [
    ("load", "load_seconds", "load_s", False, 1),
    ("generation_tps", "generation_tps", "generation_tps", True, 1),
    ("prompt_tps", "prompt_tps", "prompt_tps", True, 1),
    ("peak_memory", "peak_memory_bytes", "peak_memory_mb", False, 1 / 2**20),
]


@dataclass
class Side:
    """Everything measured about one side's runs."""

    name: str
    results: list[dict] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # every tick of every run

    def add(self, result: dict, wall: float, lags: list[float]) -> None:
        self.results.append(result)
        self.walls.append(wall)
        self.lags.extend(lags)

    def values(self, result_field: str) -> list[float]:
        return [run[result_field] for run in self.results]


def lag_figures(prefix: str, lags: list[float]) -> dict:
    return {f"{prefix}_lag_p50_ms": round(pct(lags, 0.5), 3), f"{prefix}_lag_p99_ms": round(pct(lags, 0.99), 3),
            f"{prefix}_lag_max_ms": round(max(lags), 3)}


def compare(plain: Side, trial: Side) -> dict:
    """Medians of each side, their ratios trial / plain, the ratios of the best runs, and the noise."""
    r: dict = {}
    for side in (plain, trial):
        for _, result_field, key, _, scale in METRICS:
            r[f"{side.name}_{key}"] = round(statistics.median(side.values(result_field)) * scale, 4)
        r[f"{side.name}_wall_s"] = round(statistics.median(side.walls), 3)
        r[f"{side.name}_generation_tokens"] = side.results[0]["generation_tokens"]
        for name, result_field, *_ in METRICS[:3]:
            r[f"{side.name}_{name}_spread"] = round(_common.spread(side.values(result_field)), 3)
        r |= lag_figures(side.name, side.lags)
    r["within_target"], r["beyond_noise"] = {}, {}
    for name, result_field, key, higher_is_better, _ in METRICS:
        ratio = r[f"{name}_ratio"] = round(r[f"trial_{key}"] / r[f"plain_{key}"], 3)
        best = max if higher_is_better else min
        r[f"{name}_ratio_best"] = round(best(trial.values(result_field)) / best(plain.values(result_field)), 3)
        r[f"{name}_spread"] = round(max(_common.spread(side.values(result_field)) for side in (plain, trial)), 3)
        paired, low, high = _common.paired_ratio(trial.values(result_field), plain.values(result_field))
        r[f"{name}_ratio_paired"] = round(paired, 3)
        r[f"{name}_ratio_interval"] = None if low is None else [round(low, 3), round(high, 3)]
        r["within_target"][f"{name}_ratio"] = ratio >= 1 - TARGET if higher_is_better else ratio <= 1 + TARGET
        # beyond the noise: the whole 90 % interval on the target's side
        r["beyond_noise"][f"{name}_ratio"] = low is not None and (low >= 1 - TARGET if higher_is_better
                                                                  else high <= 1 + TARGET)
    r["wall_ratio"] = round(r["trial_wall_s"] / r["plain_wall_s"], 3)
    # every run's figures, in order (pair i = run i of each side), so that runs on one machine can be pooled
    r["runs"] = {side.name: [{name: run[result_field] for name, result_field, *_ in METRICS} for run in side.results]
                 for side in (plain, trial)}
    r["trial_output_check_s"] = round(statistics.median(trial.values("output_check_seconds")), 3)
    return r


async def main(size: str, use_torch: str) -> dict:
    if use_torch != "unset":
        os.environ["USE_TORCH"] = use_torch  # the trial worker inherits it through the allowlist below
    if use_torch == "0":
        _common.hide_torch()  # transformers 5 ignores USE_TORCH
    files = tiny_llama_files(**SIZES[size])  # built once, served to every trial
    plain, trial, idle_lags, cached_downloads = Side("plain"), Side("trial"), [], []
    with FakeHub() as hub, tempfile.TemporaryDirectory(prefix="canrun-bench-trial-") as tmp:
        hub.add_repo(FakeRepo(REPO_ID, files))
        spec = TrialSpec(repo_id=REPO_ID, revision=None, prompt=PROMPT, max_tokens=MAX_TOKENS,
                         endpoint=hub.endpoint, cache_dir=Path(tmp))
        child_env = worker_env(spec)  # plain mlx-lm runs in the worker's very environment

        # Warm-up: downloads the model (timed here, from the runner's phase events) and warms the page cache
        # that both sides then read the weights from.
        warm, _, phases = await run_trial(spec)
        download_s = phases["load"] - phases["download"]
        (model_dir,) = Path(tmp).glob("models--*/snapshots/*")  # the trial's files, loaded by plain mlx-lm too
        os.sync()  # the kernel's write-back of the 200 MB just downloaded would slow down the first runs
        await run_plain(model_dir, child_env)  # plain's untimed warm-up (the trial's was the download above)

        for i in range(REPS):
            idle_lags += (await with_ticker(asyncio.sleep(IDLE_SECONDS)))[1]
            # Alternated plain, trial, trial, plain, ...: drift on a busy machine then hits both sides alike.
            for side in (plain, trial) if i % 2 == 0 else (trial, plain):
                if side is plain:
                    (result, wall), lags = await with_ticker(run_plain(model_dir, child_env))
                else:
                    (result, wall, phases), lags = await with_ticker(run_trial(spec))
                    cached_downloads.append(phases["load"] - phases["download"])  # nothing to fetch
                side.add(result, wall, lags)
                print(f"  run {i + 1}/{REPS} {side.name:<5} load {result['load_seconds']:.3f} s, generation "
                      f"{result['generation_tps']:.2f} tok/s, prompt {result['prompt_tps']:.1f} tok/s, "
                      f"peak {result['peak_memory_bytes'] / 2**20:.0f} MiB, wall {wall:.1f} s", file=sys.stderr)

    if plain.results[0]["prompt_tokens"] != warm["prompt_tokens"]:
        print(f"warning: plain mlx-lm saw {plain.results[0]['prompt_tokens']} prompt tokens, the trial "
              f"{warm['prompt_tokens']}: the comparison is off")
    r: dict = {"params": params_of(files), "weights_bytes": len(files["model.safetensors"]), "reps": REPS,
               "device": warm.get("device", "?"), "use_torch": use_torch,
               "max_tokens": MAX_TOKENS, "prompt_tokens": warm["prompt_tokens"],
               "download_s": round(download_s, 3), "download_bytes": warm["download_bytes"],
               "trial_cached_download_s": round(statistics.median(cached_downloads), 3)}
    r |= compare(plain, trial)
    r |= lag_figures("idle", idle_lags)
    r["lag_p99_vs_idle"] = round(r["trial_lag_p99_ms"] / max(r["idle_lag_p99_ms"], 1e-3), 2)
    r["lag_p99_vs_plain"] = round(r["trial_lag_p99_ms"] / max(r["plain_lag_p99_ms"], 1e-3), 2)
    return r


def report(r: dict) -> None:
    print(f"trial benchmark on {r['device']} (USE_TORCH={r['use_torch']}): random Llama, {r['params'] / 1e6:.0f}M "
          f"parameters, {r['weights_bytes'] / 2**20:.0f} MiB bf16; prompt {r['prompt_tokens']} tokens, {r['max_tokens']} new tokens, greedy; {r['reps']} alternated "
          "runs per side, each in a fresh process")
    print(f"warm-up trial downloaded {r['download_bytes'] / 2**20:.0f} MiB from the fake hub in "
          f"{r['download_s']:.2f} s (not counted below); with the files cached that phase took "
          f"{r['trial_cached_download_s']:.2f} s (importing mlx-lm, one model_info request)\n")
    ok = lambda name: "yes" if r["within_target"][f"{name}_ratio"] else "NO"  # noqa: E731
    rows = [  # label, name, plain, trial, target
        ("load (mlx_lm.load)", "load", f"{r['plain_load_s']:.3f} s", f"{r['trial_load_s']:.3f} s", "<= 1.05"),
        ("generation", "generation_tps", f"{r['plain_generation_tps']:.2f} tok/s",
         f"{r['trial_generation_tps']:.2f} tok/s", ">= 0.95"),
        ("prompt", "prompt_tps", f"{r['plain_prompt_tps']:.1f} tok/s", f"{r['trial_prompt_tps']:.1f} tok/s",
         ">= 0.95"),
        ("peak memory", "peak_memory", f"{r['plain_peak_memory_mb']:.1f} MiB", f"{r['trial_peak_memory_mb']:.1f} MiB",
         "<= 1.05"),
    ]
    beyond = lambda name: "yes" if r["beyond_noise"][f"{name}_ratio"] else "no"  # noqa: E731
    print(f"  {'median of runs':<22}{'plain mlx-lm':>16}{'canrun trial':>16}{'trial/plain':>13}{'target':>10}"
          f"{'met':>5}{'pairs: ratio (90% interval)':>30}{'beyond noise':>14}{'best runs':>11}{'spread':>8}")
    for label, name, plain, trial, target in rows:
        interval = r[name + "_ratio_interval"]
        paired = f"{r[name + '_ratio_paired']:.3f} " + (f"({interval[0]:.3f}..{interval[1]:.3f})" if interval
                                                         else "(< 5 pairs)")
        print(f"  {label:<22}{plain:>16}{trial:>16}{r[name + '_ratio']:>13.3f}{target:>10}{ok(name):>5}{paired:>30}"
              f"{beyond(name):>14}{r[name + '_ratio_best']:>11.3f}{r[name + '_spread']:>8.0%}")
    print(f"  {'process, start to exit':<22}{r['plain_wall_s']:>14.2f} s{r['trial_wall_s']:>14.2f} s"
          f"{r['wall_ratio']:>13.3f}{'(info)':>10}")
    print(f"  of which the trial's output check (perplexity pass, after the generation): {r['trial_output_check_s']:.2f} s")
    print(f"  generated tokens: plain {r['plain_generation_tokens']}, trial {r['trial_generation_tokens']}")
    print("  pairs: the median of trial / plain over the pairs of runs made back to back, with its 90% interval"
          " (order statistics,\n  no assumption on the noise's shape); beyond noise: that whole interval meets the"
          " target\n  best runs: the ratio of each side's best run; spread: (max - min) / median"
          " of one side's runs, the larger side's")
    print("  spread per side (plain / trial): " + ", ".join(
        f"{name} {r[f'plain_{name}_spread']:.0%} / {r[f'trial_{name}_spread']:.0%}"
        for name in ("generation_tps", "prompt_tps", "load")))

    print(f"\n  event loop: lateness of a {TICK_MS:.0f} ms sleep   {'p50':>9}{'p99':>9}{'max':>9}")
    for label, side in (("idle loop", "idle"), ("plain mlx-lm in a child", "plain"), ("trial running", "trial")):
        print(f"  {label:<40}{r[side + '_lag_p50_ms']:>7.2f}ms{r[side + '_lag_p99_ms']:>7.2f}ms"
              f"{r[side + '_lag_max_ms']:>7.2f}ms")
    responsive = "yes" if r["trial_lag_p99_ms"] < RESPONSIVE_MS else "NO"
    print(f"  trial p99 lateness: {r['lag_p99_vs_idle']}x the idle loop's, {r['lag_p99_vs_plain']}x that beside plain "
          f"mlx-lm; responsive (p99 < {RESPONSIVE_MS:.0f} ms): {responsive}")
    print(json.dumps(r))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a trial against plain mlx-lm, side by side")
    parser.add_argument("--params", choices=sorted(SIZES), default="100M")
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--use-torch", choices=["0", "1", "unset"], default="0")
    parser.add_argument("--prompt-repeat", type=int, default=1, choices=range(1, 101), metavar="1..100")
    options = parser.parse_args()
    REPS, MAX_TOKENS = options.reps, options.max_tokens
    PROMPT = " ".join([PROMPT] * options.prompt_repeat)
    REPO_ID = f"bench/llama-{options.params.lower()}"
    report(asyncio.run(main(options.params, options.use_torch)))
