"""Benchmark: canrun's tokens/s estimate against real generation, leave-one-out, next to the naive rule.

Scenario: random Llamas (tied embeddings, 32k vocabulary, real safetensors and tokenizer files) of about 25M,
100M, 400M and 1B parameters, in bf16 and MLX 4-bit, each loaded with mlx_lm.load and measured with
mlx_lm.stream_generate on this machine (its decode rate, as canrun counts a trial's: bot.core.speed.decode_tps): all of a round's models loaded at once, warmed up untimed, then measured in
turns (a run of each, the next pass in the other order) so that this machine's drift hits them alike; each
model's median of up to --reps runs (another run only while its runs took less than 20 s, one at least). Then, for
each model, the estimator is calibrated on the other models' measurements (bot.core.speed.calibrate, which fits the
same weight format first, as it does with a host's trials) and predicts the left-out one. Beside it:
  naive   the rule most tools use: memory bandwidth / weight bytes x 0.5 (bandwidth as canrun finds it here:
          Apple's table on a Mac, else a probe with mlx: then the median of probes between the round's passes)
  prior   canrun's own answer with no trials at all (the "estimated" label)
Errors are (predicted - measured) / measured. The whole measurement runs --rounds times (default 3; the models are
built once and measured again each round, the turns in the other order), so that each model's comparison with
the naive rule comes with its range over the rounds. Target: median |error| <= 15 % and below the naive rule's on
every model (each model's median over the rounds).

Run: `python bench/speed.py` (or `make bench`); `--reps N` (default 5), `--max-tokens N` (the fewest tokens a
run generates, default 8; a fast model generates up to 64, about 3 s of decoding),
`--sizes 25M,100M` to run fewer, `--rounds N`. The last line is one JSON object:
  device, bandwidth_gbps (one per round), bandwidth_basis        the host as canrun sees it
  rounds: [{"<size> <format>": {params, bytes_per_token, measured_tps, predicted_tps, error_pct, naive_tps,
           naive_error_pct, prior_error_pct, measured_prompt_tps, predicted_prompt_tps, prompt_error_pct}}]
  per_model: {"<size> <format>": {abs_error_pct, error_range_pct, naive_abs_error_pct, naive_range_pct,
              measured_tps_spread, rounds_better_than_naive}}
  median_abs_error_pct, naive_median_abs_error_pct               over models, of each model's median
  prior_median_abs_error_pct, prompt_median_abs_error_pct        over every model of every round
  better_than_naive_on_every_model (medians), better_in_every_round, target_met
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

import mlx.core as mx
import mlx_lm
from mlx.utils import tree_flatten

from bot.core import speed
from bot.services.host_speed import HostBandwidth, host_bandwidth, probe_bandwidth
from tests.fakes.tiny_model import params_of, tiny_llama_files, write_model

SIZES = {
    "25M": dict(hidden_size=384, layers=6, heads=6, kv_heads=2, intermediate=1024, vocab_size=32000),
    "100M": dict(hidden_size=768, layers=12, heads=12, kv_heads=4, intermediate=2048, vocab_size=32000),
    "400M": dict(hidden_size=1024, layers=24, heads=16, kv_heads=4, intermediate=4096, vocab_size=32000),
    "1B": dict(hidden_size=2048, layers=16, heads=32, kv_heads=8, intermediate=8192, vocab_size=32000),
}
FORMATS = {"bf16": None, "4bit": 4}
PROMPT = "the quick brown fox jumps over the lazy dog."
TARGET_PCT = 15.0
REP_BUDGET_S = 20.0  # per model: more runs while they are cheap
# Tokens per run: enough for RUN_SECONDS of decoding (sized from the warm-up), --max-tokens at least, and at most
# MAX_TOKENS_CAP. A fast model's 8 tokens take a fraction of a second, where one scheduler hiccup on a shared CPU
# is 10 %; a 1B 4-bit model on a CPU needs a minute for its 8.
RUN_SECONDS, MAX_TOKENS_CAP = 3.0, 64
NAIVE_EFFICIENCY = 0.5
ROUNDS = 3  # each model measured this many times: "better than naive" must hold beyond one run's noise


def run_once(loaded: dict, max_tokens: int):
    """One timed generation; the last response carries mlx-lm's own tokens/s."""
    for last in mlx_lm.stream_generate(loaded["model"], loaded["tokenizer"], loaded["tokens"],  # noqa: B007 - kept
                                       max_tokens=max_tokens):
        pass
    return last


def decoded(response) -> float:
    """A run's decode rate (bot.core.speed.decode_tps, as trials are counted): mlx-lm's generation_tps counts
    the prompt pass's token too, 14 % more than the rate at the 8 tokens a slow model here generates."""
    return speed.decode_tps({"generation_tps": response.generation_tps,
                             "generation_tokens": response.generation_tokens})


def load(path: Path, min_tokens: int) -> dict:
    """The model loaded with mlx_lm.load, warmed up (untimed), the bytes mlx holds for it, and the tokens each
    of its runs generates (RUN_SECONDS at the warm-up's speed, within min_tokens .. MAX_TOKENS_CAP)."""
    model, tokenizer = mlx_lm.load(str(path))
    loaded = {"model": model, "tokenizer": tokenizer, "tokens": tokenizer.encode(PROMPT),
              "weights": sum(v.nbytes for _, v in tree_flatten(model.parameters()))}
    warm_tps = decoded(run_once(loaded, 3))
    loaded["max_tokens"] = max(min_tokens, min(MAX_TOKENS_CAP, math.ceil(RUN_SECONDS * warm_tps)))
    return loaded


def kv_per_token(shape: dict) -> int:
    head_dim = shape["hidden_size"] // shape["heads"]
    return 2 * shape["layers"] * shape["kv_heads"] * head_dim * 2  # K and V, 16-bit


def leave_one_out(samples: dict[str, speed.Sample], host: HostBandwidth) -> dict[str, dict]:
    """Each model predicted by the estimator calibrated on the others, beside the naive rule and the prior."""
    prior = speed.prior(host.bandwidth_bps, host.basis)
    rows = {}
    for key, s in samples.items():
        others = [o for k, o in samples.items() if k != key]
        model = speed.calibrate(others, s.fmt, prior)
        predicted = model.generation_tps(s.bytes_per_token, s.layers).point
        naive = host.bandwidth_bps / (s.bytes_per_token) * NAIVE_EFFICIENCY
        prompt = model.prompt_tps(s.active_params, s.prompt_tokens).point
        rows[key] = {
            "params": s.active_params, "bytes_per_token": int(s.bytes_per_token),
            "measured_tps": round(s.generation_tps, 3), "predicted_tps": round(predicted, 3),
            "error_pct": round(speed.error_percent(predicted, s.generation_tps), 1),
            "naive_tps": round(naive, 3), "naive_error_pct": round(speed.error_percent(naive, s.generation_tps), 1),
            "prior_error_pct": round(speed.error_percent(prior.generation_tps(s.bytes_per_token).point,
                                                         s.generation_tps), 1),
            "measured_prompt_tps": round(s.prompt_tps, 3), "predicted_prompt_tps": round(prompt, 3),
            "prompt_error_pct": round(speed.error_percent(prompt, s.prompt_tps), 1),
            "calibrated_on": model.samples,
        }
    return rows


def measure_round(models: dict[str, dict], args: argparse.Namespace, backwards: bool,
                  probe: bool) -> tuple[dict[str, speed.Sample], float | None]:
    """Every model of the round loaded at once and measured in turns: one run of each, then the next pass in the
    other order, so that this machine's drift (up to 2x over minutes) hits every model, and the bandwidth probe
    between passes, alike. A model gets another run while its runs have taken less than REP_BUDGET_S (a 25M
    model gets --reps cheap runs, a 1B 4-bit one on a CPU one). Returns each model's median and, when `probe`, the
    median bandwidth probed between passes."""
    order = list(reversed(models)) if backwards else list(models)
    loaded = {key: load(models[key]["path"], args.max_tokens) for key in order}
    runs: dict[str, list] = {key: [] for key in order}
    spent = dict.fromkeys(order, 0.0)
    probes = []
    for rep in range(args.reps):
        for key in (order if rep % 2 == 0 else reversed(order)):
            if runs[key] and spent[key] >= REP_BUDGET_S:
                continue
            started = time.perf_counter()
            runs[key].append(run_once(loaded[key], loaded[key]["max_tokens"]))
            spent[key] += time.perf_counter() - started
        if probe:
            probes.append(probe_bandwidth())
    samples = {}
    for key in models:
        m, done = models[key], runs[key]
        generation_tps = statistics.median(decoded(r) for r in done)
        context = done[0].prompt_tokens + done[0].generation_tokens
        samples[key] = speed.Sample(
            loaded[key]["weights"] + kv_per_token(SIZES[m["size"]]) * context, generation_tps,
            speed.QUANTIZED if m["bits"] else speed.FLOAT, m["params"], done[0].prompt_tokens,
            statistics.median(r.prompt_tps for r in done), key, layers=SIZES[m["size"]]["layers"])
        print(f"measured {key}: {generation_tps:.2f} tok/s ({len(done)} runs of {done[0].generation_tokens} tokens)",
              file=sys.stderr, flush=True)
    del loaded
    mx.clear_cache()
    return samples, (statistics.median(probes) if probes else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    host = asyncio.run(host_bandwidth())
    probed = host.probed  # a probed bandwidth moves from run to run: probe again each round
    rounds: list[dict[str, dict]] = []
    hosts: list[HostBandwidth] = []
    with tempfile.TemporaryDirectory(prefix="canrun-bench-speed-") as tmp:
        models: dict[str, dict] = {}
        for size in args.sizes.split(","):
            for fmt, bits in FORMATS.items():
                key = f"{size} {fmt}"
                files = tiny_llama_files(**SIZES[size], quantize_bits=bits)
                models[key] = {"size": size, "bits": bits, "params": params_of(files),
                               "path": write_model(Path(tmp) / key.replace(" ", "-"), files)}
                del files
        for i in range(args.rounds):
            samples, bandwidth = measure_round(models, args, backwards=i % 2 == 1, probe=probed)
            round_host = HostBandwidth(host.device, bandwidth, host.basis, True) if bandwidth else host
            hosts.append(round_host)
            rounds.append(leave_one_out(samples, round_host))

    def abs_median(values) -> float:
        return round(statistics.median(abs(v) for v in values), 1)

    print(f"{host.device}; bandwidth {host.basis}. Leave-one-out: each model predicted from the others, "
          f"{args.rounds} rounds (each measures every model again{' and probes the bandwidth again' if probed else ''}).")
    for i, (rows, round_host) in enumerate(zip(rounds, hosts, strict=True), start=1):
        print(f"\nround {i} (bandwidth {round_host.bandwidth_bps / 1e9:.2f} GB/s"
              f"{', the median of probes between its passes' if round_host.probed else ''})")
        print(f"{'model':<12}{'bytes/token':>13}{'measured':>10}{'predicted':>11}{'error':>9}{'naive':>10}"
              f"{'naive err':>11}{'prior err':>11}{'prompt err':>12}")
        for key, r in rows.items():
            print(f"{key:<12}{r['bytes_per_token'] / 1e6:>11.1f}MB{r['measured_tps']:>10.2f}"
                  f"{r['predicted_tps']:>11.2f}{r['error_pct']:>8.1f}%{r['naive_tps']:>10.2f}"
                  f"{r['naive_error_pct']:>10.1f}%{r['prior_error_pct']:>10.1f}%{r['prompt_error_pct']:>11.1f}%")

    # Per model over the rounds: the median |error| of each rule, the range of canrun's errors, and how many rounds
    # canrun was nearer than the naive rule.
    per_model = {}
    for key in rounds[0]:
        errors = [rows[key]["error_pct"] for rows in rounds]
        naive = [rows[key]["naive_error_pct"] for rows in rounds]
        per_model[key] = {"abs_error_pct": abs_median(errors), "error_range_pct": [min(errors), max(errors)],
                          "naive_abs_error_pct": abs_median(naive), "naive_range_pct": [min(naive), max(naive)],
                          "measured_tps_spread": round(_common.spread([rows[key]["measured_tps"] for rows in rounds]), 3),
                          "rounds_better_than_naive": sum(abs(e) < abs(n) for e, n in zip(errors, naive, strict=True))}
    print(f"\nper model over {args.rounds} rounds: median |error| (range), canrun vs naive; rounds where canrun was nearer")
    for key, m in per_model.items():
        print(f"{key:<12} canrun {m['abs_error_pct']:>6.1f} % ({m['error_range_pct'][0]:+.1f} .. "
              f"{m['error_range_pct'][1]:+.1f})   naive {m['naive_abs_error_pct']:>7.1f} % "
              f"({m['naive_range_pct'][0]:+.1f} .. {m['naive_range_pct'][1]:+.1f})   nearer in "
              f"{m['rounds_better_than_naive']}/{args.rounds}   measured tok/s spread {m['measured_tps_spread']:.0%}")
    median = round(statistics.median(m["abs_error_pct"] for m in per_model.values()), 1)
    naive_median = round(statistics.median(m["naive_abs_error_pct"] for m in per_model.values()), 1)
    better = all(m["abs_error_pct"] < m["naive_abs_error_pct"] for m in per_model.values())
    every_round = all(m["rounds_better_than_naive"] == args.rounds for m in per_model.values())
    prior_median = abs_median(r["prior_error_pct"] for rows in rounds for r in rows.values())
    prompt_median = abs_median(r["prompt_error_pct"] for rows in rounds for r in rows.values())
    print(f"median |error| over models (each its median over rounds): canrun {median} %, naive rule {naive_median} %; "
          f"no-trial prior {prior_median} %, prompt {prompt_median} % (all rounds). Better than naive on every model "
          f"(medians): {better}; in every round: {every_round}. Target (<= {TARGET_PCT:g} %, better on every "
          f"model): {'met' if median <= TARGET_PCT and better else 'not met'}")
    print(json.dumps({
        "device": host.device, "bandwidth_gbps": [round(h.bandwidth_bps / 1e9, 2) for h in hosts],
        "bandwidth_basis": host.basis, "rounds": rounds, "per_model": per_model,
        "median_abs_error_pct": median, "naive_median_abs_error_pct": naive_median,
        "prior_median_abs_error_pct": prior_median, "prompt_median_abs_error_pct": prompt_median,
        "better_than_naive_on_every_model": better, "better_in_every_round": every_round,
        "target_met": median <= TARGET_PCT and better,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
