"""The dry load as a whole: its answer follows the installed mlx-lm's code, and it reads nothing but headers.

Real exchanges only: `canrun check` talks HTTP to the fake hub, and the dry load runs in a real child process.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.services.prober import Prober, ProberSettings
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import params_of, tiny_llama_files, with_config
from tests.test_verdict_matches_load import canrun_check

# What huggingface_hub's first ranged read of a safetensors file asks for (bytes=0-100000).
FIRST_HEADER_READ = 100_001
MB = 1_000_000


async def test_the_answer_follows_the_installed_mlx_lm_not_a_copied_table(tmp_path, capability_table):
    """Same repo, same canrun code: a `model_type` the installed mlx-lm does not know is refused; give the
    dry-load process a MODEL_REMAPPING entry for it (what a newer mlx-lm adds, as 0.32 did for xverse) and
    the same check says it loads. The static table, probed once, still does not know the type."""
    assert "xverse9" not in capability_table.accepted_types()
    remapped = Prober(ProberSettings(remaps=("xverse9=llama",)))
    try:
        with FakeHub() as hub:
            hub.add_repo(FakeRepo("tiny/xverse9", with_config(tiny_llama_files(), model_type="xverse9")))
            static = await canrun_check(hub, "tiny/xverse9", tmp_path / "static", capability_table, dry_load=False)
            default = await canrun_check(hub, "tiny/xverse9", tmp_path / "default", capability_table)
            patched = await canrun_check(hub, "tiny/xverse9", tmp_path / "patched", capability_table, prober=remapped)
    finally:
        remapped.close()
    assert static.verdict == "unsupported_architecture", static.reasons
    assert (default.verdict, default.checked_by) == ("unsupported_architecture", "dry_load"), default.reasons
    assert default.reasons[0].startswith(f"mlx-lm {default.mlx_lm_version} (load())"), default.reasons
    assert "xverse9" in default.reasons[0], default.reasons
    assert (patched.verdict, patched.checked_by) == ("loads", "dry_load"), patched.reasons


_repo_numbers = itertools.count()


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        yield hub


@settings(max_examples=10, deadline=None)
@given(
    layers=st.integers(1, 3),
    hidden_size=st.sampled_from([128, 256]),
    intermediate=st.sampled_from([2048, 3072]),
    dtype=st.sampled_from(["bfloat16", "float16", "float32"]),
    data=st.data(),
)
def test_a_dry_load_reads_only_the_headers(hub, capability_table, layers, hidden_size, intermediate, dtype, data):
    """Whatever the model, the whole check (metadata, headers, small files, dry load) fetches no more of any
    weight shard than the first ranged read of its header, and leaves no placeholder folder behind."""
    shards = data.draw(st.integers(1, layers), label="shards")
    files = tiny_llama_files(layers=layers, hidden_size=hidden_size, intermediate=intermediate, dtype=dtype,
                             shards=shards)
    weight_files = [name for name in files if name.endswith(".safetensors")]
    assert len(weight_files) == shards and all(len(files[name]) >= MB for name in weight_files)
    repo_id = f"tiny/headers-{next(_repo_numbers)}"
    hub.add_repo(FakeRepo(repo_id, files))

    with tempfile.TemporaryDirectory() as tmp:
        verdict = asyncio.run(canrun_check(hub, repo_id, Path(tmp), capability_table))
        left = list((Path(tmp) / "dry").iterdir())

    assert (verdict.verdict, verdict.checked_by) == ("loads", "dry_load"), verdict.reasons
    assert verdict.params == params_of(files)  # the placeholders carried every tensor of the real headers
    for name in weight_files:
        assert 0 < hub.served(repo_id, name) <= FIRST_HEADER_READ, (name, hub.served(repo_id, name))
    assert left == []
