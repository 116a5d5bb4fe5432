"""Speed and fixes in real checks: the CLI against the fake hub, trials in a real store, a tiny real MoE."""

from __future__ import annotations

import asyncio
import json
import time

import mlx.core as mx
from mlx.utils import tree_flatten

from bot.core.speed import active_fraction
from bot.services.host import device_label
from bot.services.store import Store
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import tiny_mixtral_files, write_model
from tests.test_check_cli import cli  # noqa: F401 - the fixture
from tests.test_verdict_matches_load import canrun_check


def check_json(cli, repo: str) -> dict:  # noqa: F811
    code, out, err = cli("check", repo, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_verdict_that_loads_carries_an_estimated_speed_and_what_makes_it_fit(cli):  # noqa: F811
    v = check_json(cli, "mistralai/Mistral-7B-v0.1")
    speed = v["speed"]
    assert (speed["label"], speed["device"]) == ("estimated", device_label())
    assert "GB/s (measured with mlx)" in speed["basis"]  # no Apple chip here: the probe's bandwidth
    as_is, four = speed["variants"]["as_is"], speed["variants"]["4bit"]
    assert as_is["bytes_per_token"] > four["bytes_per_token"] and four["generation_tps"]["point"] > \
        as_is["generation_tps"]["point"]
    for variant in speed["variants"].values():
        r = variant["generation_tps"]
        assert r["low"] <= r["point"] <= r["high"]
    # 14.5 GB of weights on a 16 GB budget: a conversion is what fits (the weights alone are over)
    assert v["memory"]["as_is"]["status"] != "fits"
    kinds = [f["kind"] for f in v["fixes"]]
    assert "conversion" in kinds and "wired_limit" not in kinds  # not a Mac
    code, out, _ = cli("check", "mistralai/Mistral-7B-v0.1")
    assert "speed (estimated from" in out and "as 4-bit: " in out and "tok/s" in out
    # the most faithful conversion that fits: 8-bit needs ~9.2 GB of the 12 GB
    assert "  ↳ As 8-bit it fits: `mlx_lm.convert --hf-path mistralai/Mistral-7B-v0.1 -q --q-bits 8`." in out
    assert check_json(cli, "nobody/nothing")["speed"] is None  # only verdicts that load


def test_trials_on_this_host_calibrate_and_a_trial_of_the_repo_is_measured(cli):  # noqa: F811
    device = device_label()
    # Two quantized models, checked (their verdicts carry the speed facts) and trialled here; one on another device.
    for repo in ("TheBloke/Llama-2-7B-AWQ", "mlx-community/Qwen3-0.6B-4bit"):
        check_json(cli, repo)
    asyncio.run(add_trial(cli.db, "TheBloke/Llama-2-7B-AWQ", device, 20.0))
    asyncio.run(add_trial(cli.db, "mlx-community/Qwen3-0.6B-4bit", device, 150.0))
    asyncio.run(add_trial(cli.db, "mlx-community/Qwen3-0.6B-4bit", "Some Other GPU (CUDA)", 900.0))
    v = check_json(cli, "mistralai/Mistral-7B-v0.1")
    speed = v["speed"]
    assert (speed["label"], speed["samples"], speed["format"]) == ("calibrated", 2, "float")
    assert speed["basis"] == "2 trials of models of any format on this host, per layer"  # no bf16 trial yet
    # bf16 Mistral reads about four times the bytes of the 4-bit Llama that made 20 tok/s; its 4-bit conversion
    # about as many.
    assert 0 < speed["variants"]["as_is"]["generation_tps"]["point"] < 8
    assert 15 < speed["variants"]["4bit"]["generation_tps"]["point"] < 25
    measured = check_json(cli, "TheBloke/Llama-2-7B-AWQ")["speed"]
    # The trial's decode rate: mlx-lm's 20 tok/s counted 64 tokens, the first from the prompt pass.
    assert measured["label"] == "measured"
    assert measured["variants"]["as_is"]["generation_tps"]["point"] == round(20.0 * 63 / 64, 1)


async def add_trial(db, repo: str, device: str, tps: float) -> None:
    store = await Store.open(db)
    try:
        async with store.transaction() as conn:
            await conn.execute(
                "INSERT INTO trials (repo_id, revision, requested_by, prompt, max_tokens, status, result, created_at)"
                " VALUES (?, NULL, 1, 'hi', 64, 'succeeded', ?, ?)",
                (repo, json.dumps({"generation_tps": tps, "prompt_tps": tps * 5, "prompt_tokens": 20,
                                   "generation_tokens": 64, "device": device}), time.time()))
    finally:
        await store.close()


async def test_an_moe_reads_only_its_routed_experts(tmp_path, capability_table):
    files = tiny_mixtral_files()  # 4 experts, 2 per token
    with FakeHub() as hub:
        hub.add_repo(FakeRepo("tiny/moe", dict(files)))
        verdict = await canrun_check(hub, "tiny/moe", tmp_path, capability_table, speed=True)
    import mlx_lm

    model, _ = mlx_lm.load(str(write_model(tmp_path / "model", files)))
    params = dict(tree_flatten(model.parameters()))
    total = sum(v.nbytes for v in params.values())
    experts = sum(v.nbytes for k, v in params.items() if "switch_mlp" in k)
    assert experts > 0 and isinstance(next(iter(params.values())), mx.array)
    speed = verdict.speed
    weights_read = speed.weights_per_token
    assert weights_read == int(total * active_fraction(total, experts, 4, 2)) < total
