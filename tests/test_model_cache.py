"""The model cache's budget, on real huggingface_hub cache folders downloaded from the fake hub."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download

from bot.services.model_cache import ModelCache, ModelCacheFull, free_disk_bytes
from tests.fakes.hub import FakeFile, FakeHub, FakeRepo

REPOS = ("org/a", "org/b", "org/c")  # names of one length: their folders have one size


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        for repo_id in REPOS:
            # Distinct weights per repo, so that no two repos share a blob.
            weights = FakeFile(repo_id.encode(), size=100_000)
            hub.add_repo(FakeRepo(repo_id, {"config.json": {"model_type": "llama"}, "model.safetensors": weights}))
        yield hub


def download(hub: FakeHub, cache_dir: Path, repo_id: str) -> None:
    snapshot_download(repo_id, cache_dir=cache_dir, endpoint=hub.endpoint, token=False)


def set_last_used(cache_dir: Path, repo_id: str, seconds_ago: float) -> None:
    """Date everything in a repo's folder, as if it had been downloaded `seconds_ago`."""
    when = time.time() - seconds_ago
    root = cache_dir / f"models--{repo_id.replace('/', '--')}"
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


@pytest.fixture
def cache_dir(hub, tmp_path) -> Path:
    """a, b and c downloaded, a the least recently used."""
    cache_dir = tmp_path / "models"
    for age, repo_id in zip((300, 200, 100), REPOS, strict=True):
        download(hub, cache_dir, repo_id)
        set_last_used(cache_dir, repo_id, age)
    return cache_dir


def disk_bytes(path: Path) -> int:
    """Sizes of the files under `path`, symlinks aside: counted here independently of ModelCache."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def cache_holding(cache_dir: Path, models: int) -> tuple[ModelCache, int]:
    """A cache whose budget holds `models` models beside the hub's own files, and the size of one model."""
    size = disk_bytes(cache_dir / "models--org--a")
    beside = disk_bytes(cache_dir) - len(REPOS) * size  # e.g. the hub's CACHEDIR.TAG
    return ModelCache(cache_dir, beside + models * size), size


def cached(cache: ModelCache) -> list[str]:
    return [model.repo_id for model in cache.models()]


def test_room_is_made_on_the_disk_too(cache_dir):
    size = disk_bytes(cache_dir / "models--org--a")

    def cache_on_a_disk_with(free: int, min_free: int) -> ModelCache:  # the budget holds them all; the disk is short
        return ModelCache(cache_dir, 100 * size, min_free_bytes=min_free, free_disk=lambda _: free)

    with pytest.raises(ModelCacheFull, match="less than .* free on disk even with every model canrun may delete"):
        cache_on_a_disk_with(free=10 * size, min_free=20 * size).make_room(size)
    assert cached(cache_on_a_disk_with(0, 0)) == list(REPOS)  # nothing deleted by a refusal
    # 10 free, 1 needed, 9.5 to stay free: the least recently used model goes, and that is enough
    assert cache_on_a_disk_with(free=10 * size, min_free=19 * size // 2).make_room(size) == ["org/a"]
    assert cached(cache_on_a_disk_with(0, 0)) == ["org/b", "org/c"]


def test_usage_counts_every_byte_on_disk_once(cache_dir):
    cache, size = cache_holding(cache_dir, 3)
    assert size > 100_000
    assert cache.usage() == disk_bytes(cache_dir) == cache.budget_bytes
    assert [m.size for m in cache.models()] == [size] * 3

    # What a killed download leaves behind counts too.
    leftover = cache_dir / "models--org--a" / "blobs" / "0123abcd.5f3e9a1c.incomplete"
    leftover.write_bytes(bytes(5000))
    assert cache.usage() == cache.budget_bytes + 5000
    assert {m.repo_id: m.size for m in cache.models()}["org/a"] == size + 5000


def test_make_room_evicts_least_recently_used_first_and_only_what_it_must(cache_dir):
    cache, size = cache_holding(cache_dir, 4)

    assert cache.make_room(size) == []  # 3 + 1 fit
    assert cache.make_room(2 * size) == ["org/a"]
    assert cached(cache) == ["org/b", "org/c"]
    assert cache.usage() + 2 * size <= cache.budget_bytes

    assert cache.make_room(4 * size) == ["org/b", "org/c"]
    assert cached(cache) == []


def test_make_room_keeps_what_it_is_told_to_keep(cache_dir):
    cache, size = cache_holding(cache_dir, 4)

    assert cache.make_room(3 * size, keep={"org/a"}) == ["org/b", "org/c"]
    assert cached(cache) == ["org/a"]


def test_room_for_a_repo_counts_what_of_it_is_already_on_disk(cache_dir):
    cache, size = cache_holding(cache_dir, 4)  # a, b, c cached; room for one more

    assert cache.make_room_for("org/a", 2 * size) == []  # half of it is there already
    assert cache.make_room_for("org/d", 2 * size) == ["org/a"]  # a new repo needs all of its room


def test_a_leased_model_is_neither_evicted_nor_removed_until_released(cache_dir):
    cache, size = cache_holding(cache_dir, 4)
    lease = cache.lease("org/a")  # e.g. `canrun trial` is loading it while the bot makes room

    assert cache.make_room(3 * size) == ["org/b", "org/c"]
    assert cache.remove("org/a") is False and cached(cache) == ["org/a"]
    lease.release()
    assert cache.remove("org/a") is True and cached(cache) == []


def test_reserve_holds_nothing_when_the_model_cannot_fit_and_after_trial_keeps_or_drops(cache_dir):
    cache, size = cache_holding(cache_dir, 4)
    with pytest.raises(ModelCacheFull):
        cache.reserve("org/d", 5 * size)
    assert cache.leased() == set() and cached(cache) == ["org/a", "org/b", "org/c"]

    lease = cache.reserve("org/a", size)
    assert cache.leased() == {"org/a"}
    cache.after_trial("org/a", lease, keep=True)
    assert cache.leased() == set() and cached(cache)[-1] == "org/a"  # kept, as the most recently used
    cache.after_trial("org/b", cache.reserve("org/b", size), keep=False)
    assert cached(cache) == ["org/c", "org/a"]


def test_a_lease_ends_with_its_process(cache_dir):
    cache, size = cache_holding(cache_dir, 4)
    # Another process (as `canrun trial` would be) leases org/a and dies without releasing it.
    code = ("import sys; from pathlib import Path; from bot.services.model_cache import ModelCache; "
            "ModelCache(Path(sys.argv[1]), 0).lease('org/a'); import os; os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(cache.cache_dir)], check=True, cwd=Path(__file__).parent.parent)
    assert len(list((cache.cache_dir / ".canrun-leases").glob("models--org--a@*"))) == 1

    assert cache.leased() == set()  # its lock went with it, whatever pid comes next
    assert not list((cache.cache_dir / ".canrun-leases").glob("models--org--a@*"))
    assert cache.make_room(3 * size) == ["org/a", "org/b"]


def test_a_lease_held_by_another_process_protects_the_model(cache_dir):
    cache, size = cache_holding(cache_dir, 4)
    code = ("import sys, time; from pathlib import Path; from bot.services.model_cache import ModelCache; "
            "ModelCache(Path(sys.argv[1]), 0).lease('org/a'); print('leased', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(cache.cache_dir)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)
    try:
        assert holder.stdout.readline().strip() == "leased"
        assert cache.leased() == {"org/a"}
        assert cache.make_room(3 * size) == ["org/b", "org/c"] and cache.remove("org/a") is False
    finally:
        holder.kill()
        holder.wait()
    assert cache.remove("org/a") is True


def test_touch_makes_a_model_the_most_recently_used(cache_dir):
    cache, size = cache_holding(cache_dir, 4)
    cache.touch("org/a")

    assert cached(cache) == ["org/b", "org/c", "org/a"]
    assert cache.make_room(2 * size) == ["org/b"]


def test_a_model_that_cannot_fit_deletes_nothing(cache_dir):
    cache, size = cache_holding(cache_dir, 4)

    with pytest.raises(ModelCacheFull, match="more than the whole model cache"):
        cache.make_room(cache.budget_bytes + 1)
    with pytest.raises(ModelCacheFull, match="can be made free"):
        cache.make_room(3 * size, keep={"org/a", "org/b"})
    assert cached(cache) == list(REPOS)


def test_remove_deletes_a_model_and_its_locks(hub, cache_dir):
    cache, size = cache_holding(cache_dir, 4)
    before = cache.usage()

    assert cache.remove("org/b") is True
    assert cache.remove("org/b") is False
    assert cached(cache) == ["org/a", "org/c"]
    assert cache.usage() == before - size
    assert not (cache_dir / ".locks" / "models--org--b").exists()

    download(hub, cache_dir, "org/b")  # the hub's cache still works for it
    assert cached(cache) == ["org/a", "org/c", "org/b"]


def test_a_missing_cache_is_empty(tmp_path):
    cache = ModelCache(tmp_path / "not" / "yet", budget_bytes=1000)

    assert cache.usage() == 0 and cache.models() == [] and cache.make_room(1000) == []
    assert cache.remove("org/a") is False
    assert free_disk_bytes(tmp_path / "not" / "yet") == free_disk_bytes(tmp_path) > 0
