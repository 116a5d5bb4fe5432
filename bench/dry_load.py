"""Benchmark: the dry load (the installed mlx-lm's own load on metadata) for a 0.5B, an 8B and a 671B MoE.

Each model is staged as canrun stages it (the staging is timed too): its real config and a placeholder shard carrying the header a
real checkpoint has (names, dtypes, shapes; DeepSeek-V3 as published: fp8 with 128x128 block scales, 256
routed experts per layer as separate tensors, the MTP layer). Then, side by side in one run:
  cold   a fresh prober process per dry load (mlx-lm imported each time), as a first /canrun after a start;
  warm   the same prober, a new folder each time (no outcome cache), as every later /canrun;
  static the static gates alone (decide()) on the same metadata, the answer canrun gave before.

Run: `python bench/dry_load.py` (or `make bench`); `--runs N` warm runs per model (default 7).
The last line is one JSON object, per model key ("0.5B", "8B", "671B"):
  tensors, params, model_gb, conversions_gb        what the dry load built
  cold_p50_s, cold_p99_s, warm_p50_s, warm_p99_s   dry-load wall time as the bot waits for it
  warm_spread                                      (max - min) / median of the warm runs
  static_ms, dry_vs_static                         decide() alone, and warm dry load / static
  prober_peak_rss_gb                               the prober's peak resident memory (its own getrusage)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - puts the checkout on sys.path

from bot.core.engine import EngineSettings, HostMemory, decide
from bot.core.metadata import RepoFile, RepoMetadata, Tensor
from bot.services.capability_probe import installed_mlx_lm_version
from bot.services.dry_load import CONVERSIONS
from bot.services.placeholders import new_folder, remove_folder, stage_model_folder
from bot.services.prober import Prober, ProberSettings
from tests.fakes.tiny_model import tokenizer_files

QWEN2_05B = {
    "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "num_hidden_layers": 24,
    "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
    "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA3_8B = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-5,
    "vocab_size": 128256, "rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
# deepseek-ai/DeepSeek-V3's config.json (the keys mlx-lm reads).
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 129280,
    "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
    "num_nextn_predict_layers": 1, "num_attention_heads": 128, "num_key_value_heads": 128, "n_shared_experts": 1,
    "n_routed_experts": 256, "routed_scaling_factor": 2.5, "kv_lora_rank": 512, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128, "topk_method": "noaux_tc", "n_group": 8,
    "topk_group": 4, "num_experts_per_tok": 8, "moe_layer_freq": 1, "first_k_dense_replace": 3,
    "norm_topk_prob": True, "scoring_func": "sigmoid", "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
    "rope_theta": 10000, "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                                          "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                                          "type": "yarn"},
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
}


def dense_headers(config: dict) -> dict[str, Tensor]:
    """A transformers checkpoint of a llama-like model (qwen2 adds q/k/v biases)."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    d = h // heads
    t = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not config.get("tie_word_embeddings"):
        t["lm_head.weight"] = (v, h)
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}"
        t.update({f"{p}.input_layernorm.weight": (h,), f"{p}.post_attention_layernorm.weight": (h,),
                  f"{p}.self_attn.q_proj.weight": (heads * d, h), f"{p}.self_attn.k_proj.weight": (kv * d, h),
                  f"{p}.self_attn.v_proj.weight": (kv * d, h), f"{p}.self_attn.o_proj.weight": (h, heads * d),
                  f"{p}.mlp.gate_proj.weight": (i, h), f"{p}.mlp.up_proj.weight": (i, h),
                  f"{p}.mlp.down_proj.weight": (h, i)})
        if config["model_type"] == "qwen2":
            t.update({f"{p}.self_attn.q_proj.bias": (heads * d,), f"{p}.self_attn.k_proj.bias": (kv * d,),
                      f"{p}.self_attn.v_proj.bias": (kv * d,)})
    return {k: Tensor("BF16", s) for k, s in t.items()}


def deepseek_v3_headers(c: dict) -> dict[str, Tensor]:
    """DeepSeek-V3 as published: fp8 linear weights with F32 weight_scale_inv per 128x128 block."""
    h, heads = c["hidden_size"], c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    out: dict[str, Tensor] = {}

    def fp8(name: str, rows: int, cols: int) -> None:
        out[f"{name}.weight"] = Tensor("F8_E4M3", (rows, cols))
        out[f"{name}.weight_scale_inv"] = Tensor("F32", (math.ceil(rows / 128), math.ceil(cols / 128)))

    def bf16(name: str, *shape: int) -> None:
        out[name] = Tensor("BF16", shape)

    def mlp(prefix: str, inner: int) -> None:
        fp8(f"{prefix}.gate_proj", inner, h)
        fp8(f"{prefix}.up_proj", inner, h)
        fp8(f"{prefix}.down_proj", h, inner)

    bf16("model.embed_tokens.weight", c["vocab_size"], h)
    bf16("model.norm.weight", h)
    bf16("lm_head.weight", c["vocab_size"], h)
    for layer in range(c["num_hidden_layers"] + c["num_nextn_predict_layers"]):
        p = f"model.layers.{layer}"
        bf16(f"{p}.input_layernorm.weight", h)
        bf16(f"{p}.post_attention_layernorm.weight", h)
        fp8(f"{p}.self_attn.q_a_proj", c["q_lora_rank"], h)
        bf16(f"{p}.self_attn.q_a_layernorm.weight", c["q_lora_rank"])
        fp8(f"{p}.self_attn.q_b_proj", heads * qk, c["q_lora_rank"])
        fp8(f"{p}.self_attn.kv_a_proj_with_mqa", c["kv_lora_rank"] + c["qk_rope_head_dim"], h)
        bf16(f"{p}.self_attn.kv_a_layernorm.weight", c["kv_lora_rank"])
        fp8(f"{p}.self_attn.kv_b_proj", heads * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"])
        fp8(f"{p}.self_attn.o_proj", h, heads * c["v_head_dim"])
        if layer < c["first_k_dense_replace"]:
            mlp(f"{p}.mlp", c["intermediate_size"])
            continue
        bf16(f"{p}.mlp.gate.weight", c["n_routed_experts"], h)
        out[f"{p}.mlp.gate.e_score_correction_bias"] = Tensor("F32", (c["n_routed_experts"],))
        for e in range(c["n_routed_experts"]):
            mlp(f"{p}.mlp.experts.{e}", c["moe_intermediate_size"])
        mlp(f"{p}.mlp.shared_experts", c["moe_intermediate_size"] * c["n_shared_experts"])
        if layer >= c["num_hidden_layers"]:  # the multi-token-prediction layer, which mlx-lm drops
            bf16(f"{p}.enorm.weight", h)
            bf16(f"{p}.hnorm.weight", h)
            bf16(f"{p}.eh_proj.weight", h, 2 * h)
            bf16(f"{p}.shared_head.norm.weight", h)
            bf16(f"{p}.shared_head.head.weight", c["vocab_size"], h)
    return out


MODELS = {"0.5B": (QWEN2_05B, dense_headers), "8B": (LLAMA3_8B, dense_headers), "671B": (DEEPSEEK_V3, deepseek_v3_headers)}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def small_files(tmp: Path, config: dict) -> dict[str, Path]:
    files = {"config.json": json.dumps(config).encode(), **tokenizer_files()}
    paths = {}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        paths[name] = tmp / name
    return paths


def dry_load_once(prober: Prober, work: Path, files: dict[str, Path], tensors: dict[str, Tensor]) -> tuple[float, dict]:
    """Seconds from staging the folder (as the service does) to the answer; then, untimed, until the prober is
    idle again, as it is when a /canrun comes (a burst would pay the previous answer's clean-up, ~0.6 s at 671B)."""
    t0 = time.perf_counter()
    folder = stage_model_folder(new_folder(work), files, {"model.safetensors": tensors})
    try:
        msg = prober.request({"path": str(folder), "conversions": CONVERSIONS})
        seconds = time.perf_counter() - t0
    finally:
        remove_folder(folder)
    prober.wait_idle()
    return seconds, msg


def bench_model(name: str, runs: int, cold_runs: int, tmp: Path) -> dict:
    config, make_headers = MODELS[name]
    tensors = make_headers(config)
    files = small_files(tmp, config)
    settings = ProberSettings(timeout_seconds=300, memory_ceiling_bytes=8 * 10**9)

    cold = []
    for _ in range(cold_runs):
        prober = Prober(settings)
        t0 = time.perf_counter()
        prober.hello()
        _, msg = dry_load_once(prober, tmp / "work", files, tensors)
        cold.append(time.perf_counter() - t0)
        prober.close()
    prober = Prober(settings)
    prober.hello()
    dry_load_once(prober, tmp / "work", files, tensors)  # warm-up: the model's module imported
    warm, peak = [], 0
    for _ in range(runs):
        seconds, msg = dry_load_once(prober, tmp / "work", files, tensors)
        assert msg["ok"], msg
        warm.append(seconds)
        peak = max(peak, msg.get("max_rss_bytes", 0))
    prober.close()

    meta = RepoMetadata(repo_id=f"bench/{name}", files=[RepoFile("config.json", 1), RepoFile("tokenizer.json", 1),
                                                        RepoFile("model.safetensors", 1)],
                        config=config, tokenizer_config={}, tensors=tensors)
    from bot.services.capability_probe import probe_capabilities
    import asyncio

    table = asyncio.run(probe_capabilities()) if not hasattr(bench_model, "table") else bench_model.table
    bench_model.table = table
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        decide(meta, table, HostMemory(128 * 10**9, "bench"), EngineSettings())
    static = (time.perf_counter() - t0) / n
    median = statistics.median(warm)
    return {
        "tensors": len(tensors), "params": msg["params"], "model_gb": round(msg["model_bytes"] / 1e9, 2),
        "conversions_gb": {k: round(v / 1e9, 2) for k, v in msg["conversions"].items()},
        "cold_p50_s": round(pct(cold, 0.5), 3), "cold_p99_s": round(pct(cold, 0.99), 3),
        "warm_p50_s": round(median, 3), "warm_p99_s": round(pct(warm, 0.99), 3),
        "warm_spread": round((max(warm) - min(warm)) / median, 2),
        "static_ms": round(static * 1000, 2), "dry_vs_static": round(median / static, 1),
        "prober_peak_rss_gb": round(peak / 1e9, 2),
    }


def report(results: dict) -> None:
    print(f"dry-load benchmark (mlx-lm {installed_mlx_lm_version()}), wall seconds per dry load\n")
    head = f"  {'model':<6}{'tensors':>9}{'params':>10}{'mlx GB':>8}{'cold p50':>10}{'cold p99':>10}" \
           f"{'warm p50':>10}{'warm p99':>10}{'spread':>8}{'static':>10}{'dry/static':>11}{'peak RSS':>10}"
    print(head)
    for name, r in results.items():
        print(f"  {name:<6}{r['tensors']:>9}{r['params'] / 1e9:>9.2f}B{r['model_gb']:>8.1f}{r['cold_p50_s']:>9.2f}s"
              f"{r['cold_p99_s']:>9.2f}s{r['warm_p50_s']:>9.2f}s{r['warm_p99_s']:>9.2f}s{r['warm_spread']:>8.2f}"
              f"{r['static_ms']:>8.1f}ms{r['dry_vs_static']:>10.0f}x{r['prober_peak_rss_gb']:>8.2f}GB")
    big = results.get("671B")
    if big:
        print(f"\n  671B MoE: warm p99 {big['warm_p99_s']:.2f} s (target < 3 s), prober peak {big['prober_peak_rss_gb']:.2f} GB"
              f" (target < 2 GB); as 4-bit it would need {big['conversions_gb'].get('4bit', 0):.0f} GB")
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: bench_model(name, args.runs, args.cold_runs, Path(tmp)) for name in args.models.split(",")}
    report(results)


if __name__ == "__main__":
    main()
