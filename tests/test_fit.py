"""What makes it fit, against hand-computed cases: context, quantized and capped caches, conversions, wired limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import chips, fit, memory
from bot.core.dry_load import kv_cache_bytes

GIB = 1024**3
# 32 layers of 8 KV heads x 128 dims, K and V in 16 bits: 4096 bytes per token and layer, 131072 in all.
LLAMA_8B_LAYOUT = [{"per_token": 4096, "limit": None, "fixed": 0} for _ in range(32)]
BUDGET, FRACTION = 16_000_000_000, 0.75  # target 12e9 bytes


def test_the_largest_context_by_hand():
    # need = 8e9 + 131072 t + 512 MiB + 0.05 x 8e9 <= 12e9  ->  t <= 3_063_129_088 / 131072 = 23369.8
    assert fit.largest_context(8_000_000_000, LLAMA_8B_LAYOUT, 12_000_000_000) == 23369
    # --kv-bits 8: (1 + 4/64) / 2 of the bytes, 69632 a token -> 43990.2; 4 bits: 36864 a token -> 83092.7
    assert fit.kv_bits_scale(8) == 0.53125 and fit.kv_bits_scale(4) == 0.28125
    assert fit.largest_context(8_000_000_000, LLAMA_8B_LAYOUT, 12_000_000_000, fit.kv_bits_scale(8)) == 43990
    assert fit.largest_context(8_000_000_000, LLAMA_8B_LAYOUT, 12_000_000_000, fit.kv_bits_scale(4)) == 83092
    assert fit.largest_context(13_000_000_000, LLAMA_8B_LAYOUT, 12_000_000_000) == 0  # the weights alone are over


def test_a_tight_model_is_told_its_context_cache_and_cap():
    fixes = fit.fixes(repo="org/m", weights=8_000_000_000, layout=LLAMA_8B_LAYOUT, context_tokens=32768,
                      budget=BUDGET, fit_fraction=FRACTION, conversions={})
    assert [(f["kind"], f.get("bits"), f["tokens"]) for f in fixes] == [
        ("context", None, 23369), ("kv_bits", 8, 43990), ("kv_bits", 4, 83092), ("max_kv_size", None, 23369)]
    assert "`--kv-bits 8`" in fixes[1]["text"] and "`--max-kv-size 23369`" in fixes[3]["text"]
    assert fit.fixes(repo="org/m", weights=8_000_000_000, layout=LLAMA_8B_LAYOUT, context_tokens=4096,
                     budget=BUDGET, fit_fraction=FRACTION, conversions={}) == []  # it fits: nothing to say


def test_sliding_windows_stop_growing_so_a_quantized_cache_fits_at_any_length():
    windowed = [{"per_token": 4096, "limit": 4096, "fixed": 0} for _ in range(32)]
    fixes = fit.fixes(repo="org/m", weights=10_500_000_000, layout=windowed, context_tokens=4096,
                      budget=BUDGET, fit_fraction=FRACTION, conversions={})
    # 10.5e9 + 0.525e9 + 512 MiB + 0.5 GiB = 12.1e9 > 12e9 at 4096 tokens, and no length needs more than that
    # (12e9 - 10.5e9 - 0.525e9 - 512 MiB) / 131072 = 3342.6 tokens with the default cache; a quantized one
    # holds the full 4096-token windows within the target, so any length fits.
    assert [(f["kind"], f["tokens"]) for f in fixes] == [
        ("context", 3342), ("kv_bits", fit.MAX_CONTEXT), ("kv_bits", fit.MAX_CONTEXT), ("max_kv_size", 3342)]
    assert fixes[1]["text"] == "With `--kv-bits 8` (quantized cache): at any length."


def test_too_large_weights_get_the_smallest_conversion_that_fits_and_a_wired_limit():
    conversions = {"8bit": 10_600_000_000, "4bit": 5_600_000_000}
    mac = fit.MacLimits.from_sysctl(chips.parse_sysctl("hw.memsize: 34359738368\niogpu.wired_limit_mb: 0\n"))
    fixes = fit.fixes(repo="org/m", weights=20_000_000_000, layout=LLAMA_8B_LAYOUT, context_tokens=4096,
                      budget=BUDGET, fit_fraction=FRACTION, conversions=conversions, mac=mac)
    # 8-bit: 10.6e9 + 0.53e9 + 2 x 512 MiB = 12.2e9 > 12e9; 4-bit: 6.95e9 fits.
    # need 22_073_741_824 / 0.75 -> 28 GiB after rounding up; a 32 GiB Mac keeps 4 GiB: allowed.
    assert [(f["kind"], f.get("bits"), f.get("mb")) for f in fixes] == [("conversion", 4, None),
                                                                          ("wired_limit", None, 28672)]
    assert "`mlx_lm.convert --hf-path org/m -q --q-bits 4`" in fixes[0]["text"]
    assert "`sudo sysctl iogpu.wired_limit_mb=28672`" in fixes[1]["text"] and "reboot" in fixes[1]["text"]
    small_mac = fit.MacLimits(24 * GIB, 0)
    assert fit.wired_limit_mb(22_073_741_824 * 4 // 3 + 1, small_mac) is None  # would leave under 4 GiB
    assert fit.MacLimits.from_sysctl({}) is None  # not a Mac, or sysctl said nothing


@settings(max_examples=60, deadline=None)
@given(st.integers(10**6, 10**11), st.integers(1, 10**6), st.integers(10**8, 2 * 10**11))
def test_the_largest_context_fits_and_one_more_token_does_not(weights, per_token, target):
    layout = [{"per_token": per_token, "limit": None, "fixed": 0}]
    tokens = fit.largest_context(weights, layout, target)
    if 0 < tokens < fit.MAX_CONTEXT:
        assert memory.need_bytes(weights, kv_cache_bytes(layout, tokens)) <= target
        assert memory.need_bytes(weights, kv_cache_bytes(layout, tokens + 1)) > target
