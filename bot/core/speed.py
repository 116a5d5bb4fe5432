"""How fast a model generates here: a two-number model of this host, calibrated by its own trials.

Generating one token reads every active weight and the KV cache once, so
    seconds per token = overhead + bytes read per token / effective bandwidth.
The overhead (Python, kernel launches, sampling) dominates tiny models; the bandwidth term large ones. It grows
with the model's depth: every layer launches its own kernels, so on a GPU a 24-layer 400M model generates more
slowly than a 16-layer 1B one (measured with MLX's CUDA backend: about 0.1 ms per layer and token, whatever the
layer's size). When the trials know their models' layer counts the overhead is fitted per layer (plus one layer's
worth for the embedding, the head and sampling), else per token. Both numbers are fitted by least squares to
the trials this host has run (`calibrate`), per weight format: on a GPU 4-bit and 16-bit weights stream at about
the same bytes/s, but MLX's CPU kernels for quantized weights are compute bound, so one line per format is what
holds everywhere. Without two trials the prior is the chip's published bandwidth with a wide range, and the
answer says so.

Prompt processing is compute bound: about 2 x active parameters FLOPs per token, so
    seconds per prompt = overhead + prompt tokens x 2 x active parameters / effective FLOP/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

ESTIMATED, CALIBRATED, MEASURED = "estimated", "calibrated", "measured"
FLOAT, QUANTIZED = "float", "quantized"

# The prior (no trials yet): mlx-lm reaches 45-85 % of the published bandwidth, with 0.5-5 ms per token of
# overhead; the point estimate sits inside that box and the range is its corners.
PRIOR_EFFICIENCY = (0.45, 0.65, 0.85)  # low, point, high
PRIOR_OVERHEAD_S = (0.005, 0.002, 0.0005)
# Apple GPUs offer about 25-40 fp16 FLOP per byte of bandwidth; MLX's matmuls reach roughly half of that.
PRIOR_FLOP_PER_BYTE = (7.0, 15.0, 30.0)
PRIOR_PROMPT_OVERHEAD_S = 0.01
MIN_SPREAD = 0.10  # a calibrated range is never narrower than +-10 %
TWO_POINT_SPREAD = 0.25  # two trials fit any line exactly: nothing says how well it predicts
MAX_SPREAD = 0.6


@dataclass(frozen=True)
class Sample:
    """One finished trial on this host, as the estimator sees it."""

    bytes_per_token: float  # weights read per token (active experts only) + the KV cache at the trial's context
    generation_tps: float
    fmt: str = FLOAT  # FLOAT or QUANTIZED weights
    active_params: float | None = None
    prompt_tokens: int | None = None
    prompt_tps: float | None = None
    repo: str = ""
    sha: str | None = None
    layers: int | None = None  # num_hidden_layers of the model, when its config says


@dataclass(frozen=True)
class Line:
    """y = a u + b x, fitted; u is 1, or the model's overhead units (layers + 1) when `per_layer`; `spread` is
    the relative error to expect in a prediction (a half-width)."""

    a: float
    b: float
    spread: float
    n: int
    per_layer: bool = False
    mean_units: float = 1.0  # the samples' mean u: the overhead of a model whose depth is not known

    def units(self, layers: int | None) -> float:
        if not self.per_layer:
            return 1.0
        return overhead_units(layers) if layers else self.mean_units


def overhead_units(layers: int) -> float:
    """A model's per-token overhead in layers: its layers, and one more for the embedding, the head and sampling."""
    return layers + 1.0


def fit_line(xs: list[float], ys: list[float], weights: list[float] | None = None,
             units: list[float] | None = None) -> tuple[float, float] | None:
    """Weighted least squares y = a u + b x (u = 1: a line with intercept a) with a >= 0 and b > 0 (a negative
    overhead is refitted through the origin). None when u and x do not vary apart (nothing to tell overhead
    from slope)."""
    n = len(xs)
    if n < 2:
        return None
    w = weights or [1.0] * n
    u = units or [1.0] * n
    points = list(zip(w, u, xs, ys, strict=True))
    suu = sum(wi * ui * ui for wi, ui, _, _ in points)
    sux = sum(wi * ui * x for wi, ui, x, _ in points)
    sxx = sum(wi * x * x for wi, _, x, _ in points)
    suy = sum(wi * ui * y for wi, ui, _, y in points)
    sxy = sum(wi * x * y for wi, _, x, y in points)
    det = suu * sxx - sux * sux
    if det <= 1e-12 * suu * sxx:
        return None
    a, b = (suy * sxx - sux * sxy) / det, (suu * sxy - sux * suy) / det
    if a < 0:
        a, b = 0.0, sxy / sxx
    if b <= 0:  # slower with fewer bytes: noise dominates; a flat overhead is the honest fit
        a, b = suy / suu, 0.0
    return a, b


def _fitted(xs: list[float], ys: list[float], layers: list[int | None] | None = None) -> Line | None:
    # Per layer when every sample knows its depth. Weighted by 1/y^2: the fit minimises relative errors, so a 25M
    # model counts as much as a 70B one.
    per_layer = bool(layers) and all(layers)
    units = [overhead_units(n) for n in layers] if per_layer else [1.0] * len(xs)
    fit = fit_line(xs, ys, [1 / (y * y) for y in ys], units)
    if fit is None:
        return None
    a, b = fit
    # The relative error of the time per token, per sample.
    errors = [((a * u + b * x) - y) / y for u, x, y in zip(units, xs, ys, strict=True) if y > 0]
    if len(xs) == 2:
        spread = TWO_POINT_SPREAD
    else:
        spread = 2 * math.sqrt(sum(e * e for e in errors) / len(errors))
    return Line(a, b, min(MAX_SPREAD, max(MIN_SPREAD, spread)), len(xs), per_layer, sum(units) / len(units))


@dataclass(frozen=True)
class Range:
    low: float
    point: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"low": _round(self.low), "point": _round(self.point), "high": _round(self.high)}

    @classmethod
    def from_json(cls, data: dict[str, float]) -> Range:
        return cls(data["low"], data["point"], data["high"])


def _round(x: float) -> float:
    return round(x, 1) if x >= 10 else round(x, 2)


@dataclass(frozen=True)
class HostModel:
    """What this host's speed is believed to be: from the prior or from trials."""

    label: str  # ESTIMATED or CALIBRATED
    basis: str  # in words: "M3 Max, 400 GB/s (Apple's specs)" or "3 trials of 4-bit models on this host"
    generation: Line | None  # None: the prior
    prompt: Line | None
    bandwidth_bps: float  # the prior's published or probed bandwidth
    samples: int = 0

    def generation_tps(self, bytes_per_token: float, layers: int | None = None) -> Range:
        if self.generation is None:
            corners = [1 / (o + bytes_per_token / (e * self.bandwidth_bps))
                       for o, e in zip(PRIOR_OVERHEAD_S, PRIOR_EFFICIENCY, strict=True)]
            return Range(*corners)
        line = self.generation
        point = 1 / max(1e-9, line.a * line.units(layers) + line.b * bytes_per_token)
        return _around(point, line.spread)

    def point_line(self, layers: int | None = None) -> tuple[float, float]:
        """(overhead s, s per byte) of the point estimate for a model this deep: what predicts a trial at its own
        context."""
        if self.generation is None:
            return PRIOR_OVERHEAD_S[1], 1 / (PRIOR_EFFICIENCY[1] * self.bandwidth_bps)
        return self.generation.a * self.generation.units(layers), self.generation.b

    def prompt_tps(self, active_params: float, prompt_tokens: int) -> Range:
        flops = prompt_tokens * 2 * active_params
        if self.prompt is None:
            corners = [prompt_tokens / (PRIOR_PROMPT_OVERHEAD_S + flops / (f * self.bandwidth_bps))
                       for f in PRIOR_FLOP_PER_BYTE]
            return Range(*corners)
        point = prompt_tokens / max(1e-9, self.prompt.a + self.prompt.b * flops)
        return _around(point, self.prompt.spread)


def _around(point: float, spread: float) -> Range:
    # The spread is an error of the time per token; tokens/s is its inverse.
    return Range(point / (1 + spread), point, point / max(0.05, 1 - spread))


def prior(bandwidth_bps: float, basis: str) -> HostModel:
    return HostModel(ESTIMATED, basis, None, None, bandwidth_bps)


def calibrate(samples: Iterable[Sample], fmt: str, fallback: HostModel) -> HostModel:
    """Fit this host from its trials of `fmt` weights (else of any format); the prior when they cannot tell
    overhead from bandwidth (fewer than two trials of different sizes)."""
    samples = [s for s in samples if s.generation_tps > 0 and s.bytes_per_token > 0]
    same = [s for s in samples if s.fmt == fmt]
    for chosen, words in ((same, f"{_FORMAT_WORDS[fmt]} models"), (samples, "models of any format")):
        line = _fitted([s.bytes_per_token for s in chosen], [1 / s.generation_tps for s in chosen],
                       [s.layers for s in chosen])
        if line is not None:
            prompted = [s for s in chosen if s.prompt_tps and s.prompt_tokens and s.active_params]
            prompt = _fitted([s.prompt_tokens * 2 * s.active_params for s in prompted],
                             [s.prompt_tokens / s.prompt_tps for s in prompted])
            basis = f"{len(chosen)} trials of {words} on this host" + (", per layer" if line.per_layer else "")
            return HostModel(CALIBRATED, basis, line, prompt, fallback.bandwidth_bps, len(chosen))
    return fallback


_FORMAT_WORDS = {FLOAT: "16/32-bit", QUANTIZED: "quantized"}
_LABEL_WORDS = {ESTIMATED: "estimated from", CALIBRATED: "calibrated by"}


# ---- what the model reads per token --------------------------------------------------------------------


def active_fraction(total_bytes: int, expert_bytes: int, experts: int | None, experts_per_token: int | None) -> float:
    """Share of the weights one token reads: an MoE reads `experts_per_token` of its `experts` expert weights."""
    if not total_bytes or not expert_bytes or not experts or not experts_per_token or experts_per_token >= experts:
        return 1.0
    dense = total_bytes - expert_bytes
    return (dense + expert_bytes * experts_per_token / experts) / total_bytes


def experts_per_token(config: dict[str, Any]) -> int | None:
    """How many experts route each token, under the names configs use (text_config first for VLMs)."""
    for cfg in (config.get("text_config"), config):
        if isinstance(cfg, dict):
            for key in ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "experts_per_token", "top_k"):
                value = cfg.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
    return None


# ---- the report in a verdict ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantSpeed:
    bytes_per_token: int
    generation_tps: Range
    prompt_tps: Range | None = None

    def to_json(self) -> dict[str, Any]:
        return {"bytes_per_token": self.bytes_per_token, "generation_tps": self.generation_tps.to_json(),
                "prompt_tps": self.prompt_tps.to_json() if self.prompt_tps else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantSpeed:
        prompt = data.get("prompt_tps")
        return cls(data["bytes_per_token"], Range.from_json(data["generation_tps"]),
                   Range.from_json(prompt) if prompt else None)


@dataclass
class SpeedReport:
    """Speed on this host at the repo's precision ("as_is") and as 8-bit / 4-bit conversions."""

    label: str  # ESTIMATED / CALIBRATED / MEASURED (of "as_is"; conversions are never measured)
    basis: str
    device: str
    context_tokens: int
    prompt_tokens: int
    variants: dict[str, VariantSpeed] = field(default_factory=dict)
    samples: int = 0
    # What a trial of this repo needs to become a calibration sample (bot.core.speed.sample_of).
    format: str = FLOAT
    weights_per_token: int = 0  # weights read per token at the repo's precision
    kv_per_token: float = 0.0  # cache bytes per token of context
    active_params: int | None = None
    line: tuple[float, float] | None = None  # HostModel.point_line() of the as-is format, for this model's depth
    line_label: str = ESTIMATED  # that line's own label (the report's is MEASURED when a trial exists)
    layers: int | None = None  # the model's depth: a trial of it is a per-layer sample

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "basis": self.basis, "device": self.device,
                "context_tokens": self.context_tokens, "prompt_tokens": self.prompt_tokens,
                "samples": self.samples, "variants": {k: v.to_json() for k, v in self.variants.items()},
                "format": self.format, "weights_per_token": self.weights_per_token,
                "kv_per_token": round(self.kv_per_token, 2), "active_params": self.active_params,
                "line": list(self.line) if self.line else None, "line_label": self.line_label,
                "layers": self.layers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpeedReport:
        return cls(data["label"], data["basis"], data["device"], data["context_tokens"], data["prompt_tokens"],
                   {k: VariantSpeed.from_json(v) for k, v in data.get("variants", {}).items()},
                   data.get("samples", 0), data.get("format", FLOAT), data.get("weights_per_token", 0),
                   data.get("kv_per_token", 0.0), data.get("active_params"),
                   tuple(data["line"]) if data.get("line") else None, data.get("line_label", ESTIMATED),
                   data.get("layers"))


@dataclass(frozen=True)
class SpeedInputs:
    """What the verdict knows about the model: bytes mlx holds per variant, share read per token, KV read."""

    weights: dict[str, int]  # "as_is" / "8bit" / "4bit" -> bytes
    as_is_format: str
    params: int | None
    active: float = 1.0  # active_fraction()
    kv_bytes: int = 0  # the whole cache at the context, read once per token
    layers: int | None = None  # num_hidden_layers, when the config says


def report(inputs: SpeedInputs, models: dict[str, HostModel], *, device: str, context_tokens: int,
           prompt_tokens: int, measured: Sample | None = None) -> SpeedReport:
    """`models` has a HostModel per format; `measured` is a trial of this very repo and revision."""
    variants: dict[str, VariantSpeed] = {}
    for key, weights in inputs.weights.items():
        model = models[inputs.as_is_format if key == "as_is" else QUANTIZED]
        per_token = int(weights * inputs.active + inputs.kv_bytes)
        active_params = inputs.params * inputs.active if inputs.params else None
        prompt = model.prompt_tps(active_params, prompt_tokens) if active_params else None
        variants[key] = VariantSpeed(per_token, model.generation_tps(per_token, inputs.layers), prompt)
    main = models[inputs.as_is_format]
    label, basis = main.label, main.basis
    if measured is not None and "as_is" in variants:
        # The trial's own tokens/s; its prompt was short, so the prompt speed stays the estimate at prompt_tokens.
        gen = measured.generation_tps
        variants["as_is"] = VariantSpeed(variants["as_is"].bytes_per_token, Range(gen, gen, gen),
                                         variants["as_is"].prompt_tps)
        label = MEASURED
        basis = f"a trial of this repo and revision on this host (the rest {_LABEL_WORDS[main.label]} {main.basis})"
    return SpeedReport(label, basis, device, context_tokens, prompt_tokens, variants, main.samples, inputs.as_is_format,
                       int(inputs.weights.get("as_is", 0) * inputs.active), inputs.kv_bytes / max(1, context_tokens),
                       int(inputs.params * inputs.active) if inputs.params else None,
                       main.point_line(inputs.layers), main.label, inputs.layers)


def decode_tps(result: dict[str, Any]) -> float | None:
    """Tokens/s of decoding alone, from a stream_generate result (a trial's, a benchmark's run). mlx-lm's
    `generation_tps` is every generated token over the time since the first one arrived, but that first token came
    from the prompt pass: N tokens over N - 1 decode steps, 14 % fast at 8 tokens and infinite at 1. This is the
    N - 1 steps over that time, what a long generation approaches. None without a timed step; the figure as given
    when the count is unknown."""
    tps, n = result.get("generation_tps"), result.get("generation_tokens")
    if not isinstance(tps, (int, float)) or isinstance(tps, bool) or not math.isfinite(tps) or tps <= 0:
        return None
    if not isinstance(n, int) or isinstance(n, bool):
        return float(tps)
    return tps * (n - 1) / n if n >= 2 else None


def sample_of(speed: dict[str, Any], result: dict[str, Any], repo: str = "") -> Sample | None:
    """A finished trial's result + the speed report of its verdict -> a calibration sample (None if unusable)."""
    tps = decode_tps(result)
    weights = speed.get("weights_per_token")
    if tps is None or not weights:
        return None
    context = (result.get("prompt_tokens") or 0) + (result.get("generation_tokens") or 0)
    layers = speed.get("layers")
    return Sample(weights + speed.get("kv_per_token", 0.0) * context, float(tps), speed.get("format", FLOAT),
                  speed.get("active_params"), result.get("prompt_tokens"), result.get("prompt_tps"), repo,
                  layers=layers if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0 else None)


def trial_prediction(report: SpeedReport, result: dict[str, Any]) -> dict[str, Any] | None:
    """What the verdict predicted for a trial at the trial's own context, beside the rate it decoded at."""
    measured = decode_tps(result)
    if not report.line or not report.weights_per_token or measured is None:
        return None
    context = (result.get("prompt_tokens") or 0) + (result.get("generation_tokens") or 0)
    a, b = report.line
    predicted = 1 / max(1e-9, a + b * (report.weights_per_token + report.kv_per_token * context))
    return {"predicted_tps": round(predicted, 2), "measured_tps": round(float(measured), 2),
            "error_pct": round(error_percent(predicted, measured), 1), "label": report.line_label}


def error_percent(predicted: float, measured: float) -> float:
    """Signed error of a prediction against a measurement, in % of the measurement."""
    return (predicted - measured) / measured * 100
