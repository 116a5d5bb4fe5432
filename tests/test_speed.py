"""The speed estimator as pure functions: the line it fits, its ranges, MoE, calibration and the chip table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import chips, speed
from bot.core.speed import FLOAT, QUANTIZED, Sample

PRIOR = speed.prior(400e9, "M3 Max, 400 GB/s (Apple's specs)")


def samples(overhead: float, bandwidth: float, sizes: list[float], fmt: str = FLOAT) -> list[Sample]:
    """Trials on a host that follows the model exactly."""
    return [Sample(b, 1 / (overhead + b / bandwidth), fmt, active_params=b / 2, prompt_tokens=20,
                   prompt_tps=20 / (0.01 + 20 * b / 5e12), repo=f"org/m{i}") for i, b in enumerate(sizes)]


def fitted(fmt: str = FLOAT) -> speed.HostModel:
    return speed.calibrate(samples(0.003, 300e9, [50e6, 200e6, 800e6, 2e9]), fmt, PRIOR)


def test_the_fit_recovers_overhead_and_bandwidth_of_exact_trials():
    model = fitted()
    assert model.label == speed.CALIBRATED and model.samples == 4
    assert model.generation.a == pytest.approx(0.003) and 1 / model.generation.b == pytest.approx(300e9)
    assert model.generation_tps(4e9).point == pytest.approx(1 / (0.003 + 4e9 / 300e9))
    assert model.generation.spread == speed.MIN_SPREAD  # no error at all: the floor
    assert model.basis == "4 trials of 16/32-bit models on this host"


def deep_samples(per_layer: float, bandwidth: float, models: list[tuple[float, int]]) -> list[Sample]:
    """Trials on a GPU-like host: the overhead is per layer (layers + 1 for the head), whatever a layer's size."""
    return [Sample(b, 1 / (per_layer * (layers + 1) + b / bandwidth), FLOAT, repo=f"org/d{i}", layers=layers)
            for i, (b, layers) in enumerate(models)]


def test_a_deeper_model_pays_more_overhead_when_the_trials_know_their_depth():
    # the shapes of bench/speed.py: a 24-layer 400M model is slower here than a 16-layer 1B one
    trials = deep_samples(1e-4, 2e12, [(43e6, 6), (200e6, 12), (1e9, 16)])
    model = speed.calibrate(trials, FLOAT, PRIOR)
    assert model.generation.per_layer and model.basis == "3 trials of 16/32-bit models on this host, per layer"
    assert model.generation.a == pytest.approx(1e-4) and 1 / model.generation.b == pytest.approx(2e12)
    deep, shallow = model.generation_tps(800e6, 24).point, model.generation_tps(2e9, 16).point
    assert deep == pytest.approx(1 / (25e-4 + 800e6 / 2e12)) and deep < shallow
    # a model of unknown depth gets the trials' mean overhead; the line for a model of known depth folds it in
    assert model.generation_tps(800e6).point == pytest.approx(1 / (1e-4 * (7 + 13 + 17) / 3 + 800e6 / 2e12))
    assert model.point_line(24) == pytest.approx((25e-4, 1 / 2e12))
    # one trial without its depth (recorded before depths were): the overhead is per token, as before
    mixed = trials + [Sample(400e6, 1 / (1e-4 * 25 + 400e6 / 2e12), FLOAT, repo="org/old")]
    assert not speed.calibrate(mixed, FLOAT, PRIOR).generation.per_layer


def test_the_depth_travels_from_the_config_to_the_report_and_back_as_a_sample():
    inputs = speed.SpeedInputs({"as_is": 2_000_000_000}, FLOAT, 1_000_000_000, 1.0, 0, layers=16)
    model = speed.calibrate(deep_samples(1e-4, 2e12, [(43e6, 6), (200e6, 12), (8e8, 24)]), FLOAT, PRIOR)
    report = speed.SpeedReport.from_json(speed.report(inputs, {FLOAT: model, QUANTIZED: PRIOR}, device="d",
                                                      context_tokens=0, prompt_tokens=512).to_json())
    assert report.layers == 16 and report.line == pytest.approx((17e-4, 1 / 2e12))
    facts = report.to_json()
    sample = speed.sample_of(facts, {"generation_tps": 400.0, "prompt_tokens": 0})
    assert sample.layers == 16 and sample.bytes_per_token == 2e9
    assert speed.sample_of({**facts, "layers": True}, {"generation_tps": 400.0}).layers is None
    assert speed.trial_prediction(report, {"generation_tps": 400.0})["predicted_tps"] == round(
        1 / (17e-4 + 2e9 / 2e12), 2)


def test_a_negative_overhead_is_refitted_through_the_origin():
    a, b = speed.fit_line([1.0, 2.0, 3.0], [0.5, 2.0, 3.5])  # least squares would give a = -1
    assert a == 0.0 and b == pytest.approx((0.5 + 4 + 10.5) / 14)


def test_fewer_than_two_sizes_keep_the_prior():
    assert speed.calibrate([], FLOAT, PRIOR) is PRIOR
    assert speed.calibrate(samples(0.003, 300e9, [1e9]), FLOAT, PRIOR) is PRIOR
    assert speed.calibrate(samples(0.003, 300e9, [1e9, 1e9]), FLOAT, PRIOR) is PRIOR  # one size: no slope
    two = speed.calibrate(samples(0.003, 300e9, [1e8, 1e9]), FLOAT, PRIOR)
    assert two.label == speed.CALIBRATED and two.generation.spread == speed.TWO_POINT_SPREAD


def test_calibration_prefers_the_same_format_and_says_when_it_mixes():
    mixed = samples(0.003, 300e9, [1e8, 1e9], QUANTIZED) + samples(0.05, 1e9, [1e8, 4e8], FLOAT)
    assert speed.calibrate(mixed, QUANTIZED, PRIOR).generation.a == pytest.approx(0.003)
    assert speed.calibrate(mixed, FLOAT, PRIOR).generation.a == pytest.approx(0.05)
    only_quantized = speed.calibrate(samples(0.003, 300e9, [1e8, 1e9], QUANTIZED), FLOAT, PRIOR)
    assert only_quantized.basis == "2 trials of models of any format on this host"


def test_noisy_trials_widen_the_range():
    noisy = samples(0.003, 300e9, [50e6, 200e6, 800e6, 2e9])
    noisy = [Sample(s.bytes_per_token, s.generation_tps * f, s.fmt)
             for s, f in zip(noisy, (1.2, 0.8, 1.15, 0.9), strict=True)]
    model = speed.calibrate(noisy, FLOAT, PRIOR)
    assert speed.MIN_SPREAD < model.generation.spread <= speed.MAX_SPREAD


def test_prompt_speed_is_fitted_from_flops():
    model = fitted()
    # the trials' prompts: 0.01 s + 20 tokens x 2 x (b/2) params / 5 TFLOP/s
    assert model.prompt.a == pytest.approx(0.01) and 1 / model.prompt.b == pytest.approx(5e12)
    assert model.prompt_tps(1e9, 512).point == pytest.approx(512 / (0.01 + 512 * 2e9 / 5e12))


@settings(max_examples=60, deadline=None)
@given(st.floats(1e6, 1e12), st.floats(1.01, 10.0), st.sampled_from(["prior", "fitted"]))
def test_more_bytes_never_faster_and_the_range_holds_the_point(bytes_per_token, factor, which):
    model = PRIOR if which == "prior" else fitted()
    small, large = model.generation_tps(bytes_per_token), model.generation_tps(bytes_per_token * factor)
    for r in (small, large):
        assert r.low <= r.point <= r.high
    assert large.point <= small.point and large.low <= small.low and large.high <= small.high
    prompt = model.prompt_tps(bytes_per_token, 512)
    assert prompt.low <= prompt.point <= prompt.high


@settings(max_examples=40, deadline=None)
@given(st.integers(10**8, 10**12), st.floats(0.3, 0.95), st.integers(4, 256), st.integers(1, 3))
def test_an_moe_reads_less_per_token_than_a_dense_model_of_its_size(total, expert_share, experts, per_token):
    fraction = speed.active_fraction(total, int(total * expert_share), experts, per_token)
    assert 0 < fraction < 1
    inputs = dict(weights={"as_is": total}, as_is_format=FLOAT, params=total // 2, kv_bytes=10**6)
    dense = speed.report(speed.SpeedInputs(**inputs), {FLOAT: PRIOR, QUANTIZED: PRIOR}, device="d",
                         context_tokens=4096, prompt_tokens=512)
    moe = speed.report(speed.SpeedInputs(**inputs, active=fraction), {FLOAT: PRIOR, QUANTIZED: PRIOR}, device="d",
                       context_tokens=4096, prompt_tokens=512)
    assert moe.variants["as_is"].bytes_per_token < dense.variants["as_is"].bytes_per_token
    assert moe.variants["as_is"].generation_tps.point > dense.variants["as_is"].generation_tps.point
    assert moe.variants["as_is"].prompt_tps.point > dense.variants["as_is"].prompt_tps.point


def test_active_fraction_and_experts_per_token_from_configs():
    # Mixtral 8x7B-like: 45 of 47 GB in experts, 2 of 8 routed per token
    assert speed.active_fraction(47, 45, 8, 2) == pytest.approx((2 + 45 * 2 / 8) / 47)
    assert speed.active_fraction(47, 0, None, None) == 1.0  # dense
    assert speed.experts_per_token({"num_experts_per_tok": 8}) == 8
    assert speed.experts_per_token({"text_config": {"num_experts_per_tok": 4}, "top_k": 40}) == 4
    assert speed.experts_per_token({"num_experts_per_tok": True}) is None and speed.experts_per_token({}) is None


def test_the_report_round_trips_and_a_trial_of_the_repo_is_measured():
    inputs = speed.SpeedInputs({"as_is": 2_000_000_000, "4bit": 560_000_000}, FLOAT, 1_000_000_000, 1.0, 10**8)
    models = {FLOAT: fitted(), QUANTIZED: PRIOR}
    report = speed.report(inputs, models, device="Apple M3 Max (Metal)", context_tokens=4096, prompt_tokens=512)
    assert report.label == speed.CALIBRATED and report.variants["4bit"].generation_tps.low < \
        report.variants["4bit"].generation_tps.high  # the 4-bit conversion uses the quantized (prior) model
    assert report.variants["as_is"].bytes_per_token == 2_100_000_000
    assert speed.SpeedReport.from_json(report.to_json()).to_json() == report.to_json()
    trial = Sample(2.1e9, 42.0, FLOAT)
    measured = speed.report(inputs, models, device="d", context_tokens=4096, prompt_tokens=512, measured=trial)
    assert measured.label == speed.MEASURED and measured.variants["as_is"].generation_tps.point == 42.0
    assert measured.basis == ("a trial of this repo and revision on this host (the rest calibrated by 4 trials of "
                              "16/32-bit models on this host)")


def test_a_trial_becomes_a_sample_with_the_kv_read_at_its_own_context():
    facts = {"weights_per_token": 1000, "kv_per_token": 2.0, "format": QUANTIZED, "active_params": 500}
    result = {"generation_tps": 50.0, "prompt_tps": 300.0, "prompt_tokens": 20, "generation_tokens": 30}
    sample = speed.sample_of(facts, result, "org/m")
    assert sample == Sample(1100.0, 50.0 * 29 / 30, QUANTIZED, 500, 20, 300.0, "org/m")
    assert speed.sample_of(facts, {"generation_tps": 0}) is None and speed.sample_of({}, result) is None
    assert speed.error_percent(110, 100) == pytest.approx(10.0)


def test_the_decode_rate_leaves_out_the_token_of_the_prompt_pass():
    # mlx-lm's stream_generate: N tokens over the time since the first arrived, which took N - 1 decode steps.
    assert speed.decode_tps({"generation_tps": 8.0, "generation_tokens": 8}) == pytest.approx(7.0)
    assert speed.decode_tps({"generation_tps": 64.0, "generation_tokens": 64}) == pytest.approx(63.0)
    # One token: the prompt pass made it, no decode step was timed; a generation stopped there says nothing.
    assert speed.decode_tps({"generation_tps": 5000.0, "generation_tokens": 1}) is None
    assert speed.sample_of({"weights_per_token": 1000}, {"generation_tps": 5000.0, "generation_tokens": 1}) is None
    # The count unknown (a result from elsewhere): the figure as given. Nonsense is no figure.
    assert speed.decode_tps({"generation_tps": 30.0}) == 30.0
    for bad in (0, -1.0, float("nan"), float("inf"), True, "30", None):
        assert speed.decode_tps({"generation_tps": bad, "generation_tokens": 10}) is None


# ---- the chip table ------------------------------------------------------------------------------------

# `sysctl machdep.cpu.brand_string hw.memsize hw.ncpu iogpu.wired_limit_mb` as printed on two Macs.
M3_MAX_14 = "machdep.cpu.brand_string: Apple M3 Max\nhw.memsize: 38654705664\nhw.ncpu: 14\niogpu.wired_limit_mb: 0\n"
M1_OLD_MACOS = "machdep.cpu.brand_string: Apple M1\nhw.memsize: 17179869184\nhw.ncpu: 8\n"  # no iogpu.* before 14


def test_chips_are_looked_up_from_recorded_sysctl_output():
    facts = chips.parse_sysctl(M3_MAX_14)
    assert facts["hw.memsize"] == "38654705664" and chips.int_value(facts, "iogpu.wired_limit_mb") == 0
    found = chips.chip_bandwidth(facts["machdep.cpu.brand_string"], chips.int_value(facts, "hw.ncpu"))
    assert found == chips.ChipBandwidth("M3 Max", 300.0, binned_by_cores=True)
    assert chips.chip_bandwidth("Apple M3 Max", 16).gbps == 400
    assert chips.chip_bandwidth("Apple M3 Max", None).gbps == 400  # unknown bin: the full chip
    assert chips.chip_bandwidth("Apple M4 Max", 14).gbps == 410 and chips.chip_bandwidth("Apple M4 Max", 16).gbps == 546
    old = chips.parse_sysctl(M1_OLD_MACOS)
    assert chips.chip_bandwidth(old["machdep.cpu.brand_string"]).gbps == 68.25
    assert chips.int_value(old, "iogpu.wired_limit_mb") is None


@pytest.mark.parametrize("brand, chip, gbps", [
    ("Apple M1 Pro", "M1 Pro", 200), ("Apple M1 Ultra", "M1 Ultra", 800), ("Apple M2", "M2", 100),
    ("Apple M2 Max", "M2 Max", 400), ("Apple M3 Pro", "M3 Pro", 150), ("Apple M3 Ultra", "M3 Ultra", 819),
    ("Apple M4", "M4", 120), ("Apple M4 Pro", "M4 Pro", 273), ("Apple M5", "M5", 153),
])
def test_the_table_has_apples_published_bandwidths(brand, chip, gbps):
    assert chips.chip_bandwidth(brand) == chips.ChipBandwidth(chip, gbps)


def test_other_processors_and_unknown_chips_have_no_table_answer():
    for brand in ("Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz", "AMD EPYC 7B13", "Apple M9 Max", "", "Apple A17 Pro"):
        assert chips.chip_bandwidth(brand) is None
    assert chips.parse_sysctl("garbage without colon\n: no name\n") == {}


def test_a_trial_is_compared_with_the_prediction_at_its_own_context():
    inputs = speed.SpeedInputs({"as_is": 2_000_000_000}, FLOAT, 1_000_000_000, 1.0, 4096 * 100)
    report = speed.report(inputs, {FLOAT: fitted(), QUANTIZED: PRIOR}, device="d", context_tokens=4096,
                          prompt_tokens=512)
    result = {"generation_tps": 100.0, "prompt_tokens": 20, "generation_tokens": 80}
    # 3 ms + (2e9 + 100 bytes x 100 tokens) / 300 GB/s, against 79 decode steps in the time mlx-lm gave 80 tokens
    expected, decoded = 1 / (0.003 + (2_000_000_000 + 100 * 100) / 300e9), 100.0 * 79 / 80
    compared = speed.trial_prediction(speed.SpeedReport.from_json(report.to_json()), result)
    assert compared["predicted_tps"] == round(expected, 2) and compared["label"] == speed.CALIBRATED
    assert compared["measured_tps"] == round(decoded, 2)
    assert compared["error_pct"] == round((expected - decoded) / decoded * 100, 1)
    assert speed.trial_prediction(report, {"generation_tps": None}) is None
