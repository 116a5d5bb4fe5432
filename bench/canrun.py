"""Benchmark: 200 concurrent /canrun interactions through the fake Discord and the fake hub (50 ms latency).

The production bot (CanrunBot) runs against real servers on 127.0.0.1; 200 members ask about 30 repos
at once. Measured: time to the deferral (Discord's limit is 3 s), time to the final answer, upstream hub
requests, and memory. Compared side by side with the CLI path (`canrun check` of the same 30 repos,
cold, one after another) in the same run.

Run: `python bench/canrun.py` (or `make bench`). The last line is one JSON object with the keys:
  interactions, repos, latency_ms                   scenario
  defer_p50_ms, defer_p99_ms, defer_max_ms          time from dispatch to the deferral callback
  final_p50_ms, final_p99_ms                        time from dispatch to the final edit (suggestions included)
  hub_requests, hub_fetch_sets                      upstream requests; full metadata fetches (single flight)
  rss_mb, rss_growth_mb                             resident memory of the process (bot + fakes) and its growth
  cli_ms_per_repo                                   the CLI path, cold, per repo
  defer_p99_vs_3s, final_p50_vs_cli                 ratios: share of Discord's 3 s budget; Discord path / CLI path
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.private_hub()

import logging  # noqa: E402

from bot.cli import main as cli_main  # noqa: E402
from bot.config import parse_config  # noqa: E402
from bot.discord.app import CanrunBot  # noqa: E402
from bot.services.capabilities import remember_capability_table  # noqa: E402
from bot.services.capability_probe import probe_capabilities  # noqa: E402
from bot.services.store import Store  # noqa: E402
from tests.fakes.fake_discord import FakeDiscord, patch_discord  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.hub import FakeHub, FakeRepo  # noqa: E402
from tests.fakes.threaded import LoopThread  # noqa: E402
from tests.fakes.hub_zoo import LLAMA, TOKENIZER_JSON, populate, verdict_cases, weights  # noqa: E402

INTERACTIONS, REPOS, LATENCY = 200, 30, 0.05


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import resource  # macOS: no /proc; max RSS is the closest figure

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def repo_ids(hub: FakeHub) -> list[str]:
    populate(hub)
    ids = [e.repo.repo_id for e in verdict_cases()]
    for i in range(REPOS - len(ids)):
        repo_id = f"bench/extra-{i}"
        hub.add_repo(FakeRepo(repo_id, {"config.json": LLAMA, "tokenizer.json": TOKENIZER_JSON,
                                        "model.safetensors": weights(1000 + i)}))
        ids.append(repo_id)
    return ids[:REPOS]


async def seeded_store(path: Path, table) -> None:
    store = await Store.open(path)
    await store.migrate()
    await remember_capability_table(store, table)
    await store.close()


def config(tmp: Path, hub: FakeHub, github: FakeGitHub, guild_id: int, db: str):
    return parse_config({
        "hub": {"endpoint": hub.endpoint}, "store": {"path": db}, "memory": {"budget_gb": 16.0},
        "suggestions": {"github_api": github.url},
        "discord": {"guild_ids": [guild_id], "canrun_cooldown_seconds": 0.0},
        "logging": {"file": "", "level": "WARNING"},
    }, base_dir=tmp)


async def run_discord(tmp: Path, hub: FakeHub, github: FakeGitHub, ids: list[str], table) -> dict:
    # The fake Discord runs on its own loop, as the real one is elsewhere: the bot's loop carries only the bot.
    fake_loop = LoopThread()
    on_fake = fake_loop.run
    fake = await on_fake(FakeDiscord().start())
    await seeded_store(tmp / "bot.sqlite3", table)
    bot = CanrunBot(config(tmp, hub, github, fake.guild_ids[0], "bot.sqlite3"), guild_ready_timeout=0.05)
    with patch_discord(fake):
        task = asyncio.create_task(bot.start("bench-token"))
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        rss_before = rss_mb()
        hub.reset_log()
        fetches_before = bot.services.checker.hub.upstream_fetches
        users = [fake.make_user(name=f"learner{i}") for i in range(INTERACTIONS)]
        sent: dict[int, float] = {}

        async def ask(i: int):
            t0 = time.monotonic()
            interaction = await on_fake(fake.send_slash_command("canrun", {"repo": ids[i % len(ids)]}, user=users[i]))
            sent[interaction.id] = t0
            return interaction

        interactions = await asyncio.gather(*(ask(i) for i in range(INTERACTIONS)))
        defer, final = [], []
        for it in interactions:
            done = await on_fake(fake.wait_for_request(
                "PATCH", f"{it.token}/messages/@original",
                predicate=lambda r: "Looking for" not in json.dumps(r.json), timeout=120))
            callback = fake.interaction_responses(it.id)[0]
            defer.append(callback.at - sent[it.id])
            final.append(done.at - sent[it.id])
        result = {
            "defer": defer, "final": final, "hub_requests": len(hub.requests),
            "fetch_sets": bot.services.checker.hub.upstream_fetches - fetches_before,
            "rss_mb": rss_mb(), "rss_growth_mb": rss_mb() - rss_before,
        }
        await bot.close()
        await task
    await on_fake(fake.stop())
    fake_loop.close()
    return result


def run_cli(tmp: Path, hub: FakeHub, github: FakeGitHub, ids: list[str]) -> float:
    cfg = tmp / "cli.toml"
    cfg.write_text(f'[hub]\nendpoint = "{hub.endpoint}"\n[store]\npath = "cli.sqlite3"\n'
                   f'[suggestions]\ngithub_api = "{github.url}"\n[memory]\nbudget_gb = 16.0\n')
    devnull = open(os.devnull, "w")
    stdout, sys.stdout = sys.stdout, devnull
    try:
        t0 = time.perf_counter()
        for repo_id in ids:  # one process-like run per repo, as a learner would type them
            cli_main(["check", repo_id, "--json", "--config", str(cfg)])
        return (time.perf_counter() - t0) / len(ids)
    finally:
        sys.stdout = stdout
        devnull.close()


async def main() -> dict:
    logging.basicConfig(level=logging.ERROR)
    table = await probe_capabilities()
    with FakeHub(latency=LATENCY) as hub, FakeGitHub() as github, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ids = repo_ids(hub)
        await seeded_store(tmp / "cli.sqlite3", table)
        cli_s = await asyncio.to_thread(run_cli, tmp, hub, github, ids)
        d = await run_discord(tmp, hub, github, ids, table)
    r = {
        "interactions": INTERACTIONS, "repos": len(ids), "latency_ms": LATENCY * 1000,
        "defer_p50_ms": round(pct(d["defer"], 0.5) * 1000, 1), "defer_p99_ms": round(pct(d["defer"], 0.99) * 1000, 1),
        "defer_max_ms": round(max(d["defer"]) * 1000, 1),
        "final_p50_ms": round(pct(d["final"], 0.5) * 1000, 1), "final_p99_ms": round(pct(d["final"], 0.99) * 1000, 1),
        "hub_requests": d["hub_requests"], "hub_fetch_sets": d["fetch_sets"],
        "rss_mb": round(d["rss_mb"], 1), "rss_growth_mb": round(d["rss_growth_mb"], 1),
        "cli_ms_per_repo": round(cli_s * 1000, 1),
    }
    r["defer_p99_vs_3s"] = round(pct(d["defer"], 0.99) / 3.0, 3)
    r["final_p50_vs_cli"] = round(pct(d["final"], 0.5) / cli_s, 2)
    return r


def report(r: dict) -> None:
    print(f"/canrun benchmark: {r['interactions']} concurrent interactions over {r['repos']} repos, "
          f"{r['latency_ms']:.0f} ms hub latency\n")
    print(f"  time to deferral      p50 {r['defer_p50_ms']:>8.1f} ms   p99 {r['defer_p99_ms']:>8.1f} ms   "
          f"max {r['defer_max_ms']:.1f} ms  ({r['defer_p99_vs_3s']:.1%} of Discord's 3 s at p99)")
    print(f"  time to final answer  p50 {r['final_p50_ms']:>8.1f} ms   p99 {r['final_p99_ms']:>8.1f} ms")
    print(f"  CLI path, cold        {r['cli_ms_per_repo']:.1f} ms per repo (sequential)")
    print(f"  ratio final p50 / CLI per repo: {r['final_p50_vs_cli']}x")
    print(f"  hub requests: {r['hub_requests']} ({r['hub_fetch_sets']} metadata fetch sets for {r['repos']} repos)")
    print(f"  process RSS (bot + fakes): {r['rss_mb']:.0f} MB, grew {r['rss_growth_mb']:.1f} MB during the burst")
    print(json.dumps(r))


if __name__ == "__main__":
    report(asyncio.run(main()))
