"""The hub layer under faults and tokens: what a user sees must be true whatever the cache holds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from bot.core.engine import EngineSettings, HostMemory
from bot.core.repo_id import RepoRef
from bot.core.verdicts import GATED
from bot.services.checker import Checker
from bot.services.dry_load import DryLoadService, DryLoadSettings
from bot.services.prober import shared_prober
from bot.services.hub import HubRateLimited, HubService, HubSettings, HubUnavailable, RepoInaccessible, token_identity
from tests.fakes.hub import FakeFile, FakeHub, FakeRepo
from tests.fakes.hub_zoo import LLAMA, TOKENIZER_JSON, weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def hub():
    with FakeHub() as h:
        h.add_repo(FakeRepo("org/llama", {"config.json": LLAMA, "model.safetensors": weights(1000),
                                          "tokenizer.json": TOKENIZER_JSON}))
        h.add_repo(FakeRepo("google/gemma-like", {"config.json": LLAMA, "model.safetensors": weights(10),
                                                  "tokenizer.json": TOKENIZER_JSON}, gated="manual"))
        yield h


def dry_loading_checker(svc: HubService, capability_table, tmp_path) -> Checker:
    """The verdict as the bot gives it: the static gates, then the installed mlx-lm's dry load in a child."""
    return Checker(svc, capability_table, HostMemory(10**10, "test"), EngineSettings(),
                   dry_load=DryLoadService(svc, shared_prober(), DryLoadSettings(work_dir=tmp_path / "dry")))


def service(hub, store, tmp_path, **kw) -> HubService:
    return HubService(HubSettings(endpoint=hub.endpoint, backoff_base_seconds=0.01,
                                  download_dir=tmp_path / "hub", **kw), store)


async def test_the_cache_never_crosses_tokens(hub, store, tmp_path):
    hub.authorized_tokens.add("hf_granted")
    with pytest.raises(RepoInaccessible) as e:  # no token yet: gated
        await service(hub, store, tmp_path).fetch("google/gemma-like")
    assert e.value.verdict == GATED
    # The license is accepted and a token set: the cached "gated" must not answer for it.
    meta = await service(hub, store, tmp_path, token="hf_granted").fetch("google/gemma-like")
    assert meta.config["model_type"] == "llama"
    # And what the token could read is not given to a caller without it...
    with pytest.raises(RepoInaccessible):
        await service(hub, store, tmp_path).fetch("google/gemma-like")
    # ...nor to a token without access, although config.json of that commit is on disk for the granted one.
    with pytest.raises(RepoInaccessible) as e:
        await service(hub, store, tmp_path, token="hf_wrong").fetch("google/gemma-like")
    assert e.value.verdict == GATED
    assert "hf_granted" not in token_identity("hf_granted") and token_identity(None) == "anonymous"


async def test_rate_limiting_is_named_with_the_wait(hub, store, tmp_path):
    hub.fail_next(429, count=10, path_contains="/api/models/org/llama", retry_after=42)
    with pytest.raises(HubRateLimited) as e:
        await service(hub, store, tmp_path, max_retries=1, deadline_seconds=5).fetch("org/llama")
    assert "rate limiting" in str(e.value) and "42 s" in str(e.value) and e.value.retry_after == 42


async def test_a_rate_limited_file_download_is_named_as_rate_limiting(hub, store, tmp_path):
    # The repo's info reads fine; the HEAD of config.json keeps answering 429. huggingface_hub retries it on its
    # own (5 times, 2 s apart), then reports the file as missing from its local cache.
    hub.fail_next(429, count=100, path_contains="/config.json", retry_after=1)
    with pytest.raises(HubRateLimited) as e:
        await service(hub, store, tmp_path, max_retries=0, deadline_seconds=60).fetch("org/llama")
    assert e.value.retry_after == 1 and "rate limiting" in str(e.value)


async def test_a_hub_slower_than_the_deadline_gives_up_once(hub, store, tmp_path):
    hub.latency = 3.0
    svc = service(hub, store, tmp_path, timeout_seconds=0.5, max_retries=5, deadline_seconds=1.0)
    with pytest.raises(HubUnavailable) as e:
        await svc.fetch("org/llama")
    assert "did not answer within 1 s" in str(e.value)
    # the retries stopped at the deadline instead of multiplying: a few requests, not 5 retries per call
    assert hub.count("GET", "/api/models/org/llama") <= 3


async def test_a_stalled_metadata_request_times_out_on_its_own(hub, store, tmp_path):
    hub.slow_paths["/api/models/org/llama"] = 30  # the connection opens, then nothing comes
    svc = service(hub, store, tmp_path, timeout_seconds=0.5, max_retries=0, deadline_seconds=20)
    started = time.monotonic()
    with pytest.raises(HubUnavailable) as e:
        await svc.fetch("org/llama")
    assert time.monotonic() - started < 10 and "could not reach" in str(e.value)  # not the 20 s deadline


async def test_a_giant_config_is_never_downloaded(hub, store, tmp_path):
    # Anyone may ask about any repo: a "config.json" of 5 GB (zeros past a JSON start) must not be read into memory.
    hub.add_repo(FakeRepo("odd/giant-config", {"config.json": FakeFile(json.dumps(LLAMA).encode(), size=5 * 10**9),
                                               "tokenizer_config.json": FakeFile(b"{", size=3 * 10**9),
                                               "model.safetensors": weights(1000), "tokenizer.json": TOKENIZER_JSON}))
    meta = await service(hub, store, tmp_path).fetch("odd/giant-config")
    assert meta.config is None and "too big to be a model's config" in meta.config_error
    assert meta.tokenizer_config is None
    assert hub.served("odd/giant-config", "config.json") == hub.served("odd/giant-config", "tokenizer_config.json") == 0


def test_ctrl_c_during_a_slow_hub_exits_at_once_without_traceback(tmp_path):
    with FakeHub(latency=30.0) as slow:
        slow.add_repo(FakeRepo("org/slow", {"config.json": LLAMA}))
        env = {**os.environ, "HF_ENDPOINT": slow.endpoint, "PYTHONPATH": ROOT, "HF_HOME": str(tmp_path / "hf")}
        (tmp_path / "config.toml").write_text('[store]\npath = "db.sqlite3"\n[logging]\nfile = ""\n')
        proc = subprocess.Popen([sys.executable, "-m", "bot", "check", "org/slow", "--config", "config.toml"],
                                cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not slow.count("GET", "/api/models/org/slow") and time.monotonic() < deadline:
                time.sleep(0.05)  # until the request is in flight
            assert slow.count("GET", "/api/models/org/slow"), "the request never started"
            proc.send_signal(signal.SIGINT)
            # The hub would answer after 30 s; the process must be gone long before that.
            out, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 130
    assert b"Traceback" not in err, err.decode()


async def test_an_answer_from_the_cache_says_how_old_it_is(hub, store, tmp_path):
    from bot.core.engine import HostMemory
    from bot.core.verdicts import Verdict
    from bot.render.text import render_verdict

    clock = [1000.0]
    svc = HubService(HubSettings(endpoint=hub.endpoint, download_dir=tmp_path / "hub"), store, clock=lambda: clock[0])
    first = await svc.fetch("org/llama")
    clock[0] += 600
    again = await svc.fetch("org/llama")
    assert first.fetched_at == again.fetched_at == 1000.0 and svc.upstream_fetches == 1
    v = Verdict("org/llama", "loads", mlx_lm_version="9.9", checked_by="dry_load", metadata_fetched_at=time.time())
    text = render_verdict(v, HostMemory(10**9, "test"))
    assert "mlx-lm 9.9, its own dry load" in text and "from the cache" not in text  # read just now (real clock)
    v.metadata_fetched_at = time.time() - 600
    assert "metadata read 10 min ago, from the cache (--refresh reads it again)" in render_verdict(v, HostMemory(10**9, "t"))


async def test_nothing_is_written_to_the_default_hugging_face_cache(hub, store, tmp_path):
    default_cache = os.path.join(os.environ["HF_HOME"], "hub")
    before = set(os.listdir(default_cache)) if os.path.isdir(default_cache) else set()
    meta = await service(hub, store, tmp_path).fetch("org/llama")
    assert meta.tensors  # the headers were read...
    after = set(os.listdir(default_cache)) if os.path.isdir(default_cache) else set()
    assert not {n for n in after - before if "org--llama" in n}  # ...without leaving files in the default cache
    assert any((tmp_path / "hub").rglob("config.json"))  # small files live in canrun's own download_dir


async def test_a_long_retry_after_is_not_retried_early(hub, store, tmp_path):
    hub.fail_next(429, count=10, path_contains="/api/models/org/llama", retry_after=55)
    with pytest.raises(HubRateLimited) as e:
        await service(hub, store, tmp_path, max_retries=3).fetch("org/llama")
    assert "55 s" in str(e.value)
    assert hub.count("GET", "/api/models/org/llama") == 1  # asked to wait 55 s: no retry after 0.5 s


async def test_a_failed_connect_in_another_thread_does_not_cut_off_a_download(hub, store, tmp_path):
    """huggingface_hub closes its one shared HTTP client whenever a request fails to connect, which killed the
    downloads other threads had in flight (EBADF: seen as a flaky test, a thread left over from an earlier test
    retrying against its stopped fake hub). With the client kept open (bot/services/hub_client.py) the download
    goes on, even with max_retries = 0."""
    from huggingface_hub.utils import http_backoff

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/"
    hub.slow_paths["/config.json"] = 1.0  # HEAD and GET: time to fail a connect while the GET waits for its answer
    fetch = asyncio.create_task(service(hub, store, tmp_path, max_retries=0).fetch("org/llama"))
    async with asyncio.timeout(30):
        while not hub.count("GET", "/config.json") and not fetch.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the GET's thread is now reading from its socket
        with pytest.raises(Exception) as failed:  # huggingface_hub's own request path: it closes "the" client
            await asyncio.to_thread(http_backoff, "GET", refused, max_retries=0)
        assert type(failed.value).__name__ == "ConnectError"  # httpx's, or httpx2's in huggingface_hub 2
        meta = await fetch
    assert meta.config["model_type"] == "llama"
    assert hub.count("GET", "/config.json") == 1  # not cut off, so not sent again


def test_the_kept_open_client_stays_one_client_and_a_forked_child_replaces_its_copy():
    from bot.services.hub_client import KeptOpenClient

    made = []

    class Client:
        def __init__(self):
            self.closed = False
            made.append(self)

        def close(self):
            self.closed = True

    shared = KeptOpenClient(Client)
    shared.close()  # huggingface_hub's close_session after a failed connect...
    assert shared.for_this_process() is shared  # ...then its next get_session()
    assert len(made) == 1 and not made[0].closed
    assert shared.closed is False  # every attribute is the client's
    # In a forked child (no real fork in a test process full of threads): the process whose pid differs from the
    # one that made the client.
    shared._pid = -1
    assert shared.for_this_process() is shared
    assert len(made) == 2 and made[0].closed and not made[1].closed and shared._pid == os.getpid()


async def test_small_files_that_fail_leave_the_static_verdict_with_a_note(hub, store, tmp_path, capability_table):
    checker = dry_loading_checker(service(hub, store, tmp_path, max_retries=0), capability_table, tmp_path)
    hub.fail_next(404, count=5, path_contains="/tokenizer.json")  # config.json reads fine, the tokenizer not
    verdict = await checker.check(RepoRef("org/llama"))
    assert verdict.checked_by == "static" and verdict.verdict  # an answer all the same
    assert any("small files could not be read" in r for r in verdict.reasons), verdict.reasons


async def test_a_tokenizer_too_big_for_the_dry_load_leaves_the_static_verdict(hub, store, tmp_path, capability_table):
    hub.add_repo(FakeRepo("odd/huge-tokenizer", {"config.json": LLAMA, "model.safetensors": weights(1000),
                                                 "tokenizer.json": FakeFile(b"{", size=100 * 1024**2)}))
    checker = dry_loading_checker(service(hub, store, tmp_path), capability_table, tmp_path)
    verdict = await checker.check(RepoRef("odd/huge-tokenizer"))
    # Left out, the tokenizer would fail the dry load: no answer from it, rather than a wrong one
    assert verdict.checked_by == "static", verdict.reasons
    assert any("tokenizer.json is over the 64 MB" in r for r in verdict.reasons), verdict.reasons
    assert hub.served("odd/huge-tokenizer", "tokenizer.json") == 0
