"""HubService against the fake hub: cache, single flight, retries, typed errors, tokens."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.verdicts import GATED, NOT_FOUND
from bot.services.hub import HubService, HubSettings, HubUnavailable, RepoInaccessible
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.hub_zoo import LLAMA, TOKENIZER_JSON, weights


@pytest.fixture
def hub():
    with FakeHub() as h:
        h.add_repo(FakeRepo("org/llama", {"config.json": LLAMA, "model.safetensors": weights(1_000_000),
                                          "tokenizer.json": TOKENIZER_JSON}))
        h.add_repo(FakeRepo("org/gated", {"config.json": LLAMA, "model.safetensors": weights(10)}, gated="auto"))
        yield h


def service(hub, store=None, tmp_path=None, **kw) -> HubService:
    settings = HubSettings(endpoint=hub.endpoint, backoff_base_seconds=0.01, download_dir=tmp_path or "/tmp/canrun-hub-test", **kw)
    return HubService(settings, store)


async def test_metadata_is_read_without_weights(hub, store, tmp_path):
    meta = await service(hub, store, tmp_path).fetch("org/llama")
    assert meta.config["model_type"] == "llama" and meta.sha == hub._repos["org/llama"].sha
    assert {f.path for f in meta.files} == {"config.json", "model.safetensors", "tokenizer.json"}
    assert meta.hub_parameters == {"BF16": 1_000_000}
    # config.json was downloaded; of the 2 MB of weights only the header's first ranged read was
    # (huggingface_hub asks for the first 100 kB, in case the header is long)
    assert hub.count("GET", "/config.json") == 1
    assert 0 < hub.served("org/llama", "model.safetensors") <= 100_001
    assert set(meta.tensors) == {"model.layers.0.mlp.weight"}


async def test_single_flight_under_concurrency(hub, store, tmp_path):
    hub.latency = 0.05
    svc = service(hub, store, tmp_path)
    results = await asyncio.gather(*(svc.fetch("org/llama") for _ in range(50)))
    assert all(r.sha == results[0].sha for r in results)
    assert svc.upstream_fetches == 1
    assert hub.count("GET", "/api/models/org/llama") == 1


async def test_ttl_expiry_refetches(hub, store, tmp_path):
    now = [1000.0]
    svc = HubService(HubSettings(endpoint=hub.endpoint, cache_ttl_seconds=60, download_dir=tmp_path), store,
                     clock=lambda: now[0])
    await svc.fetch("org/llama")
    now[0] += 59
    await svc.fetch("org/llama")
    assert svc.upstream_fetches == 1
    now[0] += 2
    await svc.fetch("org/llama")
    assert svc.upstream_fetches == 2


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_errors_are_retried(hub, tmp_path, status):
    hub.fail_next(status, count=2, path_contains="/api/models/org/llama", retry_after=0 if status == 429 else None)
    meta = await service(hub, None, tmp_path, max_retries=3).fetch("org/llama")
    assert meta.config is not None
    assert hub.count("GET", "/api/models/org/llama") == 3


async def test_retries_are_bounded(hub, tmp_path):
    hub.fail_next(503, count=10, path_contains="/api/models/org/llama")
    with pytest.raises(HubUnavailable, match="could not reach Hugging Face"):
        await service(hub, None, tmp_path, max_retries=2).fetch("org/llama")
    assert hub.count("GET", "/api/models/org/llama") == 3


async def test_gated_and_not_found_are_outcomes_and_cached(hub, store, tmp_path):
    svc = service(hub, store, tmp_path)
    with pytest.raises(RepoInaccessible) as e:
        await svc.fetch("org/gated")
    assert e.value.verdict == GATED
    with pytest.raises(RepoInaccessible) as e:
        await svc.fetch("org/missing")
    assert e.value.verdict == NOT_FOUND
    with pytest.raises(RepoInaccessible) as e:
        await svc.fetch("org/llama", "no-such-branch")
    assert e.value.verdict == NOT_FOUND
    with pytest.raises(RepoInaccessible):
        await svc.fetch("org/missing")
    assert svc.upstream_fetches == 3  # the second not-found came from the cache


async def test_token_opens_gated_repo(hub, tmp_path):
    hub.authorized_tokens.add("hf_good")
    meta = await service(hub, None, tmp_path, token="hf_good").fetch("org/gated")
    assert meta.config["model_type"] == "llama" and meta.gated
    assert any(r.token == "hf_good" for r in hub.requests)


async def test_revision_is_pinned_to_the_commit_read(hub, tmp_path):
    repo = hub._repos["org/llama"]
    repo.revisions["dev"] = {**repo.files, "config.json": {**LLAMA, "model_type": "mistral"}}
    svc = service(hub, None, tmp_path)
    dev = await svc.fetch("org/llama", "dev")
    assert dev.config["model_type"] == "mistral" and dev.sha == repo.sha_of("dev") and dev.revision == "dev"
    main = await svc.fetch("org/llama")
    assert main.config["model_type"] == "llama"


async def test_list_models_is_cached(hub, tmp_path):
    svc = service(hub, None, tmp_path)
    first = await svc.list_models(search="llama")
    assert [m["id"] for m in first] == ["org/llama"]
    await svc.list_models(search="llama")
    assert hub.count("GET", "/api/models") - hub.count("GET", "/api/models/") == 1
