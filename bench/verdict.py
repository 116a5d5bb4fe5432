"""Benchmark: the verdict path under concurrency, against the fake hub with injected latency.

Scenario: 50 distinct repos, each asked 4 times, by 200 concurrent callers, through canrun's
Checker (SQLite cache + single flight + retries) -- once cold (empty cache), once warm. Compared,
in the same run, with a naive sequential client that downloads config.json on every call and
looks the model_type up in a list of module names (the common recipe canrun replaces).

Run: `python bench/verdict.py` (or `make bench`). The last line is one JSON object with the keys:
  repos, asks, latency_ms                      scenario
  naive_requests, canrun_cold_requests         upstream HTTP requests made
  canrun_fetch_sets                            full metadata fetches started (single flight: = repos)
  naive_total_s, canrun_cold_total_s, canrun_warm_total_s      wall time for all asks
  cold_p50_ms, cold_p99_ms, warm_p50_ms, warm_p99_ms           per-ask latency as callers saw it
  warm_cpu_ms_per_verdict, decide_cpu_us                       CPU per warm verdict; decide() alone
  speedup_vs_naive, warm_vs_cold_p50, requests_ratio           ratios (bigger = canrun better)
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.request
from pathlib import Path

import _common

_common.private_hub()

from bot.core.engine import EngineSettings, HostMemory, decide  # noqa: E402
from bot.core.repo_id import RepoRef  # noqa: E402
from bot.services.capability_probe import probe_capabilities  # noqa: E402
from bot.services.checker import Checker  # noqa: E402
from bot.services.hub import HubService, HubSettings  # noqa: E402
from bot.services.store import Store  # noqa: E402
from tests.fakes.hub import FakeHub, FakeRepo  # noqa: E402
from tests.fakes.hub_zoo import LLAMA, MISTRAL, QWEN3, TOKENIZER_JSON, weights  # noqa: E402

REPOS, ASKS_PER_REPO, CALLERS, LATENCY = 50, 4, 200, 0.05


def make_repos(hub: FakeHub) -> list[str]:
    ids = []
    for i in range(REPOS):
        config = [LLAMA, MISTRAL, QWEN3][i % 3]
        if i % 5 == 0:
            config = {**config, "quantization": {"group_size": 64, "bits": 4}}
        repo_id = f"bench/model-{i:02d}"
        hub.add_repo(FakeRepo(repo_id, {"config.json": config, "tokenizer.json": TOKENIZER_JSON,
                                        "tokenizer_config.json": {}, "model.safetensors": weights(10_000 + i)}))
        ids.append(repo_id)
    return ids


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def run_canrun(checker: Checker, asks: list[str]) -> tuple[list[float], float, float]:
    latencies: list[float] = []
    gate = asyncio.Event()

    async def caller(repo_id: str) -> None:
        await gate.wait()
        t0 = time.perf_counter()
        await checker.check(RepoRef(repo_id))
        latencies.append(time.perf_counter() - t0)

    tasks = [asyncio.create_task(caller(r)) for r in asks]
    await asyncio.sleep(0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    gate.set()  # all 200 callers start together
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - t0, time.process_time() - cpu0


def run_naive(endpoint: str, asks: list[str], module_names: set[str]) -> float:
    t0 = time.perf_counter()
    for repo_id in asks:
        with urllib.request.urlopen(f"{endpoint}/{repo_id}/resolve/main/config.json") as resp:
            model_type = json.loads(resp.read())["model_type"]
        _ = model_type in module_names
    return time.perf_counter() - t0


async def main() -> dict:
    table = await probe_capabilities()
    with FakeHub(latency=LATENCY) as hub, tempfile.TemporaryDirectory() as tmp:
        ids = make_repos(hub)
        asks = [r for r in ids for _ in range(ASKS_PER_REPO)]  # 200 asks, repeated repos interleaved
        asks = asks[::2] + asks[1::2]
        assert len(asks) == CALLERS

        hub.reset_log()
        naive_s = run_naive(hub.endpoint, asks, set(table.modules))
        naive_requests = len(hub.requests)

        store = await Store.open(Path(tmp) / "bench.sqlite3")
        await store.migrate()
        service = HubService(HubSettings(endpoint=hub.endpoint, download_dir=Path(tmp) / "hub"), store)
        checker = Checker(service, table, HostMemory(16 * 1024**3, "bench"), EngineSettings())
        hub.reset_log()
        cold, cold_s, _ = await run_canrun(checker, asks)
        cold_requests = len(hub.requests)
        warm, warm_s, warm_cpu = await run_canrun(checker, asks)
        fetch_sets = service.upstream_fetches

        meta = await service.fetch(ids[1])
        n = 2000
        cpu0 = time.process_time()
        for _ in range(n):
            decide(meta, table, checker.host)
        decide_us = (time.process_time() - cpu0) / n * 1e6
        await checker.close()
        await store.close()

    r = {
        "repos": REPOS, "asks": len(asks), "latency_ms": LATENCY * 1000,
        "naive_requests": naive_requests, "canrun_cold_requests": cold_requests, "canrun_fetch_sets": fetch_sets,
        "naive_total_s": round(naive_s, 3), "canrun_cold_total_s": round(cold_s, 3), "canrun_warm_total_s": round(warm_s, 4),
        "cold_p50_ms": round(pct(cold, 0.5) * 1000, 2), "cold_p99_ms": round(pct(cold, 0.99) * 1000, 2),
        "warm_p50_ms": round(pct(warm, 0.5) * 1000, 3), "warm_p99_ms": round(pct(warm, 0.99) * 1000, 3),
        "warm_cpu_ms_per_verdict": round(warm_cpu / len(asks) * 1000, 3), "decide_cpu_us": round(decide_us, 1),
    }
    r["speedup_vs_naive"] = round(naive_s / cold_s, 1)
    r["warm_vs_cold_p50"] = round(pct(cold, 0.5) / pct(warm, 0.5), 1)
    r["requests_ratio"] = round(naive_requests / max(1, cold_requests), 2)
    return r


def report(r: dict) -> None:
    print(f"verdict benchmark: {r['repos']} repos x {r['asks'] // r['repos']} asks, {r['asks']} concurrent callers, "
          f"{r['latency_ms']:.0f} ms hub latency\n")
    rows = [
        ("", "naive (config.json/call)", "canrun cold", "canrun warm"),
        ("upstream requests", r["naive_requests"], r["canrun_cold_requests"], 0),
        ("wall time, all asks", f"{r['naive_total_s']:.2f} s", f"{r['canrun_cold_total_s']:.2f} s", f"{r['canrun_warm_total_s'] * 1000:.1f} ms"),
        ("p50 per ask", "", f"{r['cold_p50_ms']:.1f} ms", f"{r['warm_p50_ms']:.2f} ms"),
        ("p99 per ask", "", f"{r['cold_p99_ms']:.1f} ms", f"{r['warm_p99_ms']:.2f} ms"),
    ]
    for row in rows:
        print(f"  {row[0]:<22}{row[1]!s:>26}{row[2]!s:>16}{row[3]!s:>16}")
    print(f"\n  metadata fetch sets: {r['canrun_fetch_sets']} for {r['repos']} distinct repos (single flight)")
    print(f"  CPU per warm verdict: {r['warm_cpu_ms_per_verdict']:.2f} ms; decide() alone: {r['decide_cpu_us']:.0f} µs")
    print(f"  ratios: canrun cold is {r['speedup_vs_naive']}x faster than naive; warm p50 is {r['warm_vs_cold_p50']}x "
          f"faster than cold; naive makes {r['requests_ratio']}x the requests (and answers only model_type)")
    print(json.dumps(r))


if __name__ == "__main__":
    report(asyncio.run(main()))
