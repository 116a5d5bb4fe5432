"""What the dry load measures on the built model: conversions as mlx_lm.convert would size them, and the KV cache."""

from __future__ import annotations

import copy

import mlx_lm.utils as utils
from mlx.utils import tree_flatten

from bot.core.dry_load import kv_cache_bytes
from bot.services import dry_load_child
from tests.fakes.tiny_model import tiny_llama_files, write_model


def test_conversion_sizes_equal_quantize_model_at_each_width(tmp_path):
    path = write_model(tmp_path / "m", tiny_llama_files(hidden_size=128, intermediate=256))
    model, config = utils.load_model(path, lazy=True)
    sizes = dry_load_child._conversion_sizes(model, config, [[8, 64], [4, 64], [3, 32]])
    for bits, group_size in ((8, 64), (4, 64), (3, 32)):
        direct, _ = utils.load_model(path, lazy=True)
        utils.quantize_model(direct, copy.deepcopy(config), group_size, bits)
        assert sizes[f"{bits}bit"] == sum(v.nbytes for _, v in tree_flatten(direct.parameters())), bits
    assert sizes["4bit"] < sizes["8bit"] < dry_load_child._parameter_bytes(model)


def test_the_kv_layout_is_the_models_own(tmp_path):
    files = tiny_llama_files(hidden_size=64, layers=2, heads=4, kv_heads=2)
    model, _ = utils.load_model(write_model(tmp_path / "m", files), lazy=True)
    layout = dry_load_child._kv_layout(model)
    # 2 layers, K and V, 2 KV heads of 16 dims, bf16: 2 * 2 * 16 * 2 bytes per token and layer
    assert [entry["per_token"] for entry in layout] == [2 * 2 * 16 * 2] * 2
    assert kv_cache_bytes(layout, 1000) == 2 * 128 * 1000
    windowed = [{"per_token": 100, "limit": 512, "fixed": 0}, {"per_token": 0, "limit": None, "fixed": 7}]
    assert kv_cache_bytes(windowed, 4096) == 100 * 512 + 7  # a sliding window stops growing; a state is fixed
