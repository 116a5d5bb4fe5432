"""Benchmark: /leaderboard, /mystats and a round's settlement on a large guild.

Scenario: one guild with 5,000 members and 200,000 settled predictions (outside rounds, 2 % peeked) over
20 seasons, activity skewed like a real community (a few members predict a lot), with canrun's own forecast on
each of the 20,000 repos (its leaderboard row, each prediction's vs canrun and kind of model), bulk-inserted
into a temp SQLite file, then the standings rebuilt by the service. Then, through the service (aiosqlite, as the bot
runs it): leaderboard pages all time and for one season (page 1 and the last page), member stats all time
and for one season, and 5 rounds of 5 repos x 100 members (500 predictions, and canrun's 5 forecasts) placed,
closed and revealed.
min_settled is 1 so every board is as long as it can be. Side by side: the all-time page computed by
aggregating the predictions table directly, which is what the standings table saves; and /mystats of the most
active member (about 8,300 settled predictions) against a row-per-prediction read of the same history (what
member_stats would cost without the standings and tallies that the database's triggers keep: the totals, then a
row per settled prediction), alternated, in HEAVY_BLOCKS blocks of 20 runs each.

Run: `python bench/leaderboard.py` (or `make bench`). The last line is one JSON object with the keys:
  users, predictions, seasons, runs                        scenario (runs: timed repetitions per query)
  build_s, rebuild_standings_s                             bulk insert; standings rebuilt from scratch
  lb_all_p1_{p50,p99}_ms, lb_all_deep_{p50,p99}_ms         /leaderboard all time, page 1 and the last page
  lb_season_p1_{p50,p99}_ms, lb_season_deep_{p50,p99}_ms   /leaderboard of one season
  stats_all_{p50,p99}_ms, stats_season_{p50,p99}_ms        /mystats of random members
  stats_heaviest_p50_ms, stats_heaviest_spread            /mystats of the most active member (median of the blocks'
                                                             p50s; spread: (max - min) / median of those p50s)
  rowwise_heaviest_p50_ms, rowwise_heaviest_spread         the row-per-prediction read of that member, alike
  heaviest_vs_rowwise                                      ratio of the two medians
  naive_lb_all_p1_p50_ms                                   the all-time page aggregated from predictions
  place_{p50,p99}_ms                                       one placement in a round
  reveal_500_{p50,max}_ms                                  revealing a round of 5 repos and 500 predictions
  reveal_active_ms                                         the same, the round played by the most active members
  *_ratio                                                  time / target (p99 for queries; < 1 meets it)
Targets: 20 ms per /leaderboard and /mystats query, 250 ms per reveal (well inside Discord's 3 s reply window).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import _common

from bot.core.canrun_forecast import forecast
from bot.core.failure_kinds import failure_kind
from bot.core.scoring import brier_points, group_relative_points, points_vs, probability_of_loads, streaks
from bot.core.verdicts import LOADS, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_QUANTIZATION, UNSUPPORTED_WEIGHTS
from bot.services import predictions as game
from bot.services.store import Store

USERS, PREDICTIONS, SEASONS, REPOS, RUNS = 5_000, 200_000, 20, 20_000, 200
GUILD, PAGE_SIZE, SEASON_DAYS = 1, 10, 30
ROUNDS, ROUND_REPOS, ROUND_MEMBERS = 5, 5, 100
QUERY_TARGET_MS, REVEAL_TARGET_MS = 20.0, 250.0
HEAVY_BLOCKS, HEAVY_RUNS = 5, 20
DAY = 86_400.0
T0 = 1_600_000_000.0
CANRUN_VERDICTS = (LOADS, LOADS, LOADS, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_WEIGHTS, UNSUPPORTED_QUANTIZATION)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def activity(rnd: random.Random) -> list[int]:
    """Predictions per member: Zipf-like, at least 1 each, summing to PREDICTIONS."""
    weights = [1 / (rank + 1) ** 0.8 for rank in range(USERS)]
    spare = PREDICTIONS - USERS
    counts = [1 + int(spare * w / sum(weights)) for w in weights]
    for i in rnd.sample(range(USERS), PREDICTIONS - sum(counts)):
        counts[i] += 1
    rnd.shuffle(counts)
    return counts


def build(path: Path, rnd: random.Random) -> None:
    """Bulk insert in one transaction with plain sqlite3: seasons, then settled predictions with their points,
    relative points, vs canrun and kind, and canrun's forecast per repo (the service's formulas), as years of
    play would have left them."""
    seasons = [(i + 1, GUILD, f"S{i + 1}", T0 + i * SEASON_DAYS * DAY, T0 + (i + 1) * SEASON_DAYS * DAY)
               for i in range(SEASONS)]
    rows, groups = [], defaultdict(list)
    for user, count in enumerate(activity(rnd), start=1000):
        for repo in rnd.sample(range(REPOS), count):
            settled_at = T0 + rnd.random() * SEASONS * SEASON_DAYS * DAY
            will_load, confidence, outcome = rnd.random() < 0.6, rnd.randint(50, 99), rnd.random() < 0.55
            peeked = rnd.random() < 0.02
            points = None if peeked else round(brier_points(probability_of_loads(will_load, confidence), outcome), 2)
            row = [GUILD, user, f"bench/repo-{repo}", will_load, confidence, peeked,
                   settled_at - rnd.uniform(3600, 10 * DAY), outcome, settled_at, points, None,
                   int((settled_at - T0) // (SEASON_DAYS * DAY)) + 1, None, None]  # vs_canrun, kind: below
            rows.append(row)
            if points is not None:
                groups[row[2]].append(row)
    forecasts = []
    for repo, members in groups.items():
        for row, rel in zip(members, group_relative_points([r[9] for r in members]), strict=True):
            row[10] = round(rel, 3)
        # canrun's forecast on the repo, settled with its first member (the service's formulas)
        first = min(members, key=lambda r: r[8])
        verdict, fit = rnd.choice(CANRUN_VERDICTS), rnd.choice(("fits", "fits", "too_large"))
        made = forecast(verdict, {})
        canrun = round(brier_points(made.p_loads, first[7]), 2)
        forecasts.append((GUILD, repo, verdict, fit, failure_kind(verdict, fit), made.prior, made.p_loads,
                          first[6] - 1, first[7], first[8], canrun, first[11]))
        for row in members:
            row[12:14] = [round(points_vs(row[9], canrun), 2), failure_kind(verdict, fit)]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO seasons (id, guild_id, name, started_at, ended_at) VALUES (?, ?, ?, ?, ?)", seasons)
        db.executemany(
            "INSERT INTO predictions (guild_id, user_id, repo_id, will_load, confidence, status, peeked, created_at,"
            " updated_at, outcome, settled_by, settled_at, points, relative_points, season_id, vs_canrun, kind)"
            " VALUES (?, ?, ?, ?, ?, 'settled', ?, ?, ?, ?, 'verdict', ?, ?, ?, ?, ?, ?)",
            [(*r[:7], r[6], *r[7:]) for r in rows])  # updated_at = created_at
        db.executemany(
            "INSERT INTO canrun_forecasts (guild_id, repo_id, verdict, fit, kind, prior, trials, agreed, p_loads,"
            " status, created_at, outcome, settled_by, settled_at, points, season_id)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, 'settled', ?, ?, 'verdict', ?, ?, ?)", forecasts)


async def timed(runs: int, make_call) -> list[float]:
    """Milliseconds of each run; make_call(i) returns a fresh awaitable."""
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        await make_call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def rowwise_history(store: Store, user_id: int) -> None:
    """The baseline for the most active member's /mystats: its totals, then one row per settled prediction in
    settlement order, counted and walked for streaks in Python."""
    settled = "FROM predictions WHERE guild_id = ? AND user_id = ? AND status = 'settled'"
    async with store.conn.execute(f"SELECT TOTAL(points), TOTAL(relative_points), COUNT(*) - COUNT(points),"
                                  f" TOTAL(vs_canrun), COUNT(vs_canrun) {settled}", (GUILD, user_id)) as cur:
        await cur.fetchone()
    async with store.conn.execute(f"SELECT kind, will_load, confidence, outcome {settled} AND points IS NOT NULL"
                                  " ORDER BY settled_at, id", (GUILD, user_id)) as cur:
        rows = await cur.fetchall()
    Counter((r[0], r[1], r[2], r[3]) for r in rows)
    streaks(r[1] == r[3] for r in rows)


async def alternated_blocks(calls: dict) -> dict[str, list[float]]:
    """p50 of each block of HEAVY_RUNS runs per call, the calls alternated run by run."""
    blocks: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(HEAVY_BLOCKS):
        runs: dict[str, list[float]] = {name: [] for name in calls}
        for i in range(HEAVY_RUNS):
            for name, call in (calls.items() if i % 2 == 0 else reversed(calls.items())):
                runs[name] += await timed(1, call)
        for name, values in runs.items():
            blocks[name].append(statistics.median(values))
    return blocks


async def naive_page(store: Store) -> None:
    async with store.conn.execute(
        "SELECT user_id, ROUND(SUM(points), 2) AS total, MAX(settled_at) AS reached FROM predictions"
        " WHERE guild_id = ? AND status = 'settled' AND points IS NOT NULL GROUP BY user_id"
        " ORDER BY total DESC, reached, user_id LIMIT ?", (GUILD, PAGE_SIZE)) as cur:
        await cur.fetchall()


async def play_rounds(store: Store, rnd: random.Random,
                      active: list[int]) -> tuple[list[float], list[float], list[float]]:
    """ROUNDS rounds of ROUND_REPOS repos x ROUND_MEMBERS members drawn at random, then one played by the `active`
    members (the most active ROUND_MEMBERS: a settlement that read its members' whole history would make this
    the costly round; the triggers add each new prediction to the totals instead): placement times, reveal times,
    and the active round's reveal time (ms)."""
    place_ms, reveal_ms = [], []
    at = T0 + SEASONS * SEASON_DAYS * DAY
    for k in range(ROUNDS + 1):
        repos = [f"bench/round-{k}-{i}" for i in range(ROUND_REPOS)]
        r = await game.open_round(store, guild_id=GUILD, opened_by=1, repos=repos, at=at)
        for repo in repos:  # canrun's forecasts, as the bot makes them when a round opens
            await game.record_forecast(store, guild_id=GUILD, repo_id=repo, round_id=r.id,
                                       forecast=forecast(rnd.choice(CANRUN_VERDICTS), {}), at=at)
        for user in (rnd.sample(range(1000, 1000 + USERS), ROUND_MEMBERS) if k < ROUNDS else active):
            for repo in rnd.sample(repos, len(repos)):  # each member clicks the round's repos in their own order
                t0 = time.perf_counter()
                await game.place_prediction(store, guild_id=GUILD, user_id=user, repo_id=repo,
                                            will_load=rnd.random() < 0.5, confidence=rnd.randint(50, 99),
                                            round_id=r.id, at=at + 1)
                place_ms.append((time.perf_counter() - t0) * 1000)
        await game.close_round(store, r.id, at=at + 2)
        outcomes = {repo: (rnd.random() < 0.5, "verdict") for repo in repos}
        t0 = time.perf_counter()
        results = await game.reveal_round(store, r.id, outcomes, at=at + 3)
        reveal_ms.append((time.perf_counter() - t0) * 1000)
        assert sum(m.scored for m in results.members) == ROUND_REPOS * ROUND_MEMBERS
        assert len(results.canrun) == ROUND_REPOS and all(m.vs_canrun is not None for m in results.members)
        at += 10
    return place_ms, reveal_ms[:ROUNDS], reveal_ms[ROUNDS:]


async def main() -> dict:
    rnd = random.Random(20240601)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite3"
        store = await Store.open(path)
        await store.migrate()
        await store.close()
        t0 = time.perf_counter()
        build(path, rnd)
        build_s = time.perf_counter() - t0

        store = await Store.open(path)
        t0 = time.perf_counter()
        await game.rebuild_standings(store, GUILD)
        rebuild_s = time.perf_counter() - t0

        season = SEASONS // 2
        last_all = (await game.leaderboard(store, GUILD, page_size=PAGE_SIZE, min_settled=1)).pages
        last_season = (await game.leaderboard(store, GUILD, season_id=season, page_size=PAGE_SIZE,
                                              min_settled=1)).pages
        members = [rnd.randrange(1000, 1000 + USERS) for _ in range(RUNS)]
        async with store.conn.execute("SELECT user_id FROM standings WHERE guild_id = ? AND season_id = 0"
                                      " ORDER BY settled DESC LIMIT 1", (GUILD,)) as cur:
            heaviest = (await cur.fetchone())[0]

        def board(season_id, page):
            return lambda i: game.leaderboard(store, GUILD, season_id=season_id, page=page, page_size=PAGE_SIZE,
                                              min_settled=1)

        ms = {
            "lb_all_p1": await timed(RUNS, board(None, 1)),
            "lb_all_deep": await timed(RUNS, board(None, last_all)),
            "lb_season_p1": await timed(RUNS, board(season, 1)),
            "lb_season_deep": await timed(RUNS, board(season, last_season)),
            "stats_all": await timed(RUNS, lambda i: game.member_stats(store, GUILD, members[i], min_settled=1)),
            "stats_season": await timed(RUNS, lambda i: game.member_stats(store, GUILD, members[i],
                                                                          season_id=season, min_settled=1)),
        }
        heavy = await alternated_blocks({
            "stats_heaviest": lambda i: game.member_stats(store, GUILD, heaviest, min_settled=1),
            "rowwise_heaviest": lambda i: rowwise_history(store, heaviest)})
        naive_ms = await timed(20, lambda i: naive_page(store))
        async with store.conn.execute("SELECT user_id FROM standings WHERE guild_id = ? AND season_id = 0"
                                      " ORDER BY settled DESC LIMIT ?", (GUILD, ROUND_MEMBERS)) as cur:
            active = [row[0] for row in await cur.fetchall()]
        place_ms, reveal_ms, active_reveal_ms = await play_rounds(store, rnd, active)
        await store.close()

    r: dict = {"users": USERS, "predictions": PREDICTIONS, "seasons": SEASONS, "runs": RUNS,
               "build_s": round(build_s, 2), "rebuild_standings_s": round(rebuild_s, 3)}
    for name, values in ms.items():
        r[f"{name}_p50_ms"] = round(pct(values, 0.5), 3)
        r[f"{name}_p99_ms"] = round(pct(values, 0.99), 3)
    for name, p50s in heavy.items():
        r[f"{name}_p50_ms"] = round(statistics.median(p50s), 3)
        r[f"{name}_spread"] = round(_common.spread(p50s), 3)
    r["heaviest_vs_rowwise"] = round(r["stats_heaviest_p50_ms"] / r["rowwise_heaviest_p50_ms"], 3)
    r["naive_lb_all_p1_p50_ms"] = round(statistics.median(naive_ms), 2)
    r["place_p50_ms"], r["place_p99_ms"] = round(pct(place_ms, 0.5), 3), round(pct(place_ms, 0.99), 3)
    r["reveal_500_p50_ms"], r["reveal_500_max_ms"] = round(statistics.median(reveal_ms), 2), round(max(reveal_ms), 2)
    r["reveal_active_ms"] = round(active_reveal_ms[0], 2)
    for name in ms:
        r[f"{name}_ratio"] = round(r[f"{name}_p99_ms"] / QUERY_TARGET_MS, 3)
    r["stats_heaviest_ratio"] = round(r["stats_heaviest_p50_ms"] / QUERY_TARGET_MS, 3)
    r["naive_lb_all_p1_ratio"] = round(r["naive_lb_all_p1_p50_ms"] / QUERY_TARGET_MS, 3)
    r["reveal_500_ratio"] = round(r["reveal_500_max_ms"] / REVEAL_TARGET_MS, 3)
    r["reveal_active_ratio"] = round(r["reveal_active_ms"] / REVEAL_TARGET_MS, 3)
    return r


def report(r: dict) -> None:
    print(f"leaderboard benchmark: {r['users']:,} members, {r['predictions']:,} settled predictions, "
          f"{r['seasons']} seasons; built in {r['build_s']:.1f} s, standings rebuilt in {r['rebuild_standings_s']:.2f} s\n")
    rows = [
        ("/leaderboard all time, page 1", "lb_all_p1"), ("/leaderboard all time, last page", "lb_all_deep"),
        ("/leaderboard one season, page 1", "lb_season_p1"), ("/leaderboard one season, last page", "lb_season_deep"),
        ("/mystats all time", "stats_all"), ("/mystats one season", "stats_season"),
    ]
    print(f"  {'query':<40}{'p50':>10}{'p99':>10}{'target':>10}{'p99/target':>12}")
    for label, key in rows:
        print(f"  {label:<40}{r[key + '_p50_ms']:>8.2f}ms{r[key + '_p99_ms']:>8.2f}ms{QUERY_TARGET_MS:>8.0f}ms"
              f"{r[key + '_ratio']:>12.3f}")
    print(f"  {'/mystats, most active member (p50)':<40}{r['stats_heaviest_p50_ms']:>8.2f}ms{'':>10}"
          f"{QUERY_TARGET_MS:>8.0f}ms{r['stats_heaviest_ratio']:>12.3f}")
    print(f"  {'  its history read row by row (p50)':<40}{r['rowwise_heaviest_p50_ms']:>8.2f}ms")
    print(f"  {'all-time page 1 without standings (p50)':<40}{r['naive_lb_all_p1_p50_ms']:>8.2f}ms{'':>10}"
          f"{QUERY_TARGET_MS:>8.0f}ms{r['naive_lb_all_p1_ratio']:>12.3f}")
    print(f"\n  round of {ROUND_REPOS} repos x {ROUND_MEMBERS} members: placement p50 {r['place_p50_ms']:.2f} ms, "
          f"p99 {r['place_p99_ms']:.2f} ms; reveal (500 predictions) p50 {r['reveal_500_p50_ms']:.1f} ms, "
          f"max {r['reveal_500_max_ms']:.1f} ms = {r['reveal_500_ratio']:.3f} of the {REVEAL_TARGET_MS:.0f} ms target")
    print(f"  the same round played by the {ROUND_MEMBERS} most active members: reveal {r['reveal_active_ms']:.1f} ms = "
          f"{r['reveal_active_ratio']:.3f} of the target")
    print(f"  /mystats of the most active member: {r['heaviest_vs_rowwise']:.2f} of the row-by-row read's time "
          f"(spread of the {HEAVY_BLOCKS} blocks' p50s: {r['stats_heaviest_spread']:.0%} / "
          f"{r['rowwise_heaviest_spread']:.0%})")
    print(f"  standings make the all-time page {r['naive_lb_all_p1_p50_ms'] / r['lb_all_p1_p50_ms']:.0f}x faster "
          "than aggregating the predictions")
    print(json.dumps(r))


if __name__ == "__main__":
    report(asyncio.run(main()))
