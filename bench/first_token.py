"""Benchmark: time from "a trial starts" to its first generated token, warm worker vs cold worker vs plain mlx-lm.

Scenario: a random Llama of about 100M parameters (`--params` for larger), served by the fake hub and downloaded
once (untimed). Then, alternating, REPS times each:
  warm   canrun's trial path with a worker started ahead (SpareWorker) that has finished importing mlx-lm, as
         when the bot has been idle between trials: the clock starts when the trial is handed to it
  cold   canrun's trial path starting its worker process for the trial (warm_worker = false)
  plain  `python -m mlx_lm generate --model DIR --prompt P --max-tokens N` from a shell: the clock starts at the
         spawn, the first token is the first text after mlx-lm's "==========" line
All three load the same files from disk and generate greedily from the same prompt: the trials' default one. The trial sides include
their check against the hub (one model_info request) and the worker's protocol.

Run: `python bench/first_token.py` (or `make bench`); `--reps N` (default 5), `--params 100M|1B|3B`,
`--torch hidden|visible` (default hidden: no child imports torch, as on a Mac where mlx-lm's environment lacks it;
where torch is installed, transformers imports it and each cold start pays that).
The last line is one JSON object with the keys:
  params, reps, device
  {warm,cold,plain}_first_token_s      medians, seconds
  {warm,cold,plain}_spread             (max - min) / median of that side's runs
  warm_vs_plain, cold_vs_plain         ratios of the medians (target: warm_vs_plain <= 0.5)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.private_hub()

from bench.trial import SIZES  # noqa: E402
from bot.config import TrialsConfig  # noqa: E402
from bot.services.trial_runner import SpareWorker, TrialLimits, TrialSpec, start_trial, worker_env  # noqa: E402
from tests.fakes.hub import FakeHub, FakeRepo  # noqa: E402
from tests.fakes.tiny_model import params_of, tiny_llama_files  # noqa: E402

REPS, MAX_TOKENS, TARGET = 5, 8, 0.5
PROMPT = TrialsConfig().default_prompt  # what a /trial without a prompt generates from
READY_TIMEOUT = 300.0  # importing mlx-lm where transformers imports torch takes tens of seconds


async def trial_first_token(spec: TrialSpec, spare: SpareWorker | None) -> tuple[float, dict]:
    process = start_trial(spec, TrialLimits(), spare=spare)
    outcome = await process.run(lambda progress: None)
    if outcome.status != "succeeded" or process.first_token_seconds is None:
        raise RuntimeError(f"trial {outcome.status}: {outcome.error}")
    return process.first_token_seconds, outcome.result


async def warm_first_token(spec: TrialSpec) -> tuple[float, dict]:
    spare = SpareWorker()
    await spare.prepare(spec)
    if not await spare.ready(READY_TIMEOUT):
        raise RuntimeError("the spare worker never became ready")
    try:
        seconds, result = await trial_first_token(spec, spare)
    finally:
        await spare.close()
    assert result["warm_worker"], "the trial did not take the spare"
    return seconds, result


async def plain_first_token(model_dir: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mlx_lm", "generate", "--model", str(model_dir), "--prompt", PROMPT,
        "--max-tokens", str(MAX_TOKENS), env={**env, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    seen_rule, first = False, None
    while first is None:
        chunk = await process.stdout.read(1)  # mlx-lm flushes each piece of text as it comes
        if not chunk:
            break
        if seen_rule and chunk not in (b"\n", b"="):
            first = time.perf_counter() - started
        seen_rule = seen_rule or chunk == b"="
    await process.communicate()
    if first is None or process.returncode != 0:
        raise RuntimeError(f"plain mlx-lm generate failed (exit {process.returncode})")
    return first


async def main(size: str, reps: int) -> dict:
    files = tiny_llama_files(**SIZES[size])
    runs: dict[str, list[float]] = {"warm": [], "cold": [], "plain": []}
    with FakeHub() as hub, tempfile.TemporaryDirectory(prefix="canrun-bench-ttft-") as tmp:
        hub.add_repo(FakeRepo("bench/first-token", files))
        spec = TrialSpec(repo_id="bench/first-token", revision=None, prompt=PROMPT, max_tokens=MAX_TOKENS,
                         endpoint=hub.endpoint, cache_dir=Path(tmp))
        _, result = await trial_first_token(spec, None)  # downloads the model: untimed
        (model_dir,) = Path(tmp).glob("models--*/snapshots/*")
        env = worker_env(spec)
        await plain_first_token(model_dir, env)  # plain's warm-up: page cache, kernel caches
        for i in range(reps):
            order = ("warm", "cold", "plain") if i % 2 == 0 else ("plain", "cold", "warm")
            for side in order:
                if side == "warm":
                    runs[side].append((await warm_first_token(spec))[0])
                elif side == "cold":
                    runs[side].append((await trial_first_token(spec, None))[0])
                else:
                    runs[side].append(await plain_first_token(model_dir, env))
                print(f"  run {i + 1}/{reps} {side:<5} {runs[side][-1]:.2f} s", file=sys.stderr)
    r: dict = {"params": params_of(files), "reps": reps, "device": result.get("device", "?")}
    for side, values in runs.items():
        r[f"{side}_first_token_s"] = round(statistics.median(values), 3)
        r[f"{side}_spread"] = round(_common.spread(values), 3)
    r["warm_vs_plain"] = round(r["warm_first_token_s"] / r["plain_first_token_s"], 3)
    r["cold_vs_plain"] = round(r["cold_first_token_s"] / r["plain_first_token_s"], 3)
    return r


def report(r: dict) -> None:
    print(f"time to first token on {r['device']}: random Llama, {r['params'] / 1e6:.0f}M parameters, "
          f"{r['reps']} alternated runs per side (median, spread)\n")
    for side, label in (("warm", "trial, warm worker"), ("cold", "trial, cold worker"),
                        ("plain", "python -m mlx_lm generate")):
        print(f"  {label:<28}{r[f'{side}_first_token_s']:>8.2f} s{r[f'{side}_spread']:>8.0%}")
    met = "yes" if r["warm_vs_plain"] <= TARGET else "NO"
    print(f"\n  warm / plain {r['warm_vs_plain']:.2f} (target <= {TARGET}: {met}); cold / plain {r['cold_vs_plain']:.2f}")
    print(json.dumps(r))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="time to first token: warm worker, cold worker, plain mlx-lm")
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--params", choices=sorted(SIZES), default="100M")
    parser.add_argument("--torch", choices=["hidden", "visible"], default="hidden",
                        help="hidden (default): no child imports torch, as on a Mac (bench/no_torch)")
    options = parser.parse_args()
    if options.torch == "hidden":
        _common.hide_torch()
    report(asyncio.run(main(options.params, options.reps)))
