"""The verdict engine, gate by gate, on hand-built metadata and the real installed mlx-lm table."""

import pytest

from bot.core import verdicts as V
from bot.core.engine import access_verdict, decide
from tests.builders import GB, config, meta

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128}


def test_plain_llama_loads(capability_table, host_16gb):
    v = decide(meta(config(), hub_parameters={"BF16": 8_030_000_000}), capability_table, host_16gb)
    assert v.verdict == V.LOADS
    assert (v.model_type, v.module, v.remapped_by) == ("llama", "llama", None)
    assert v.quantization == "bf16"
    assert v.weights_bytes == 16 * GB and v.params == 8_030_000_000
    assert v.mlx_lm_version == capability_table.mlx_lm_version


@pytest.mark.parametrize(
    "model_type, module",
    [("mistral", "llama"), ("qwen2_5_vl", "qwen2_vl"), ("falcon_mamba", "mamba"), ("kimi_k2", "deepseek_v3")],
)
def test_remapped_types_load(capability_table, host_16gb, model_type, module):
    d = capability_table.dispatch(model_type)
    assert (d.module, d.remapped_by) == (module, "MODEL_REMAPPING")
    # Build a config with whatever the target module requires, so only the dispatch is under test.
    required = {a: 1 for a in d.info.required_args}
    v = decide(meta({**required, "model_type": model_type}), capability_table, host_16gb)
    assert v.verdict == V.LOADS, v.reasons
    assert v.module == module and v.remapped_by == "MODEL_REMAPPING"
    assert "remapped" in v.reasons[0]


def test_architecture_remapping_uses_architectures(capability_table):
    d = capability_table.dispatch("bailing_hybrid", ["BailingMoeV3ForCausalLM"])
    assert (d.module, d.remapped_by) == ("bailing_moe_v3", "MODEL_ARCHITECTURE_REMAPPING")
    assert capability_table.dispatch("bailing_hybrid", ["Other"]).module == "bailing_hybrid"


@pytest.mark.parametrize("helper", ["activations", "ssm", "mla", "pipeline", "gated_delta", "bitlinear_layers", "cache"])
def test_helper_modules_are_not_architectures(capability_table, host_16gb, helper):
    v = decide(meta(config(model_type=helper)), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_ARCHITECTURE
    assert helper not in capability_table.accepted_types()


def test_unknown_architecture(capability_table, host_16gb):
    v = decide(meta(config(model_type="brand_new_arch", auto_map={"AutoModel": "x.Y"})), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_ARCHITECTURE
    assert "brand_new_arch" in v.reasons[0] and "never uses it" in v.reasons[0]


def test_module_that_needs_an_extra_package(capability_table, host_16gb):
    assert capability_table.modules["olmo"].missing_package == "ai2-olmo"
    v = decide(meta(config(model_type="olmo")), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_ARCHITECTURE
    assert "ai2-olmo" in v.reasons[0]


def test_missing_required_model_args(capability_table, host_16gb):
    v = decide(meta(config(rms_norm_eps=None)), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_ARCHITECTURE and "rms_norm_eps" in v.reasons[0]


@pytest.mark.parametrize(
    "files, words",
    [
        ({"config.json": 1, "model.gguf": 5 * GB, "tokenizer.json": 1}, "GGUF"),
        ({"config.json": 1, "pytorch_model.bin": 5 * GB, "tokenizer.json": 1}, ".bin"),
        ({"config.json": 1, "consolidated.safetensors": 5 * GB, "tokenizer.json": 1}, "consolidated"),
        ({"config.json": 1, "weights/model.safetensors": 5 * GB, "tokenizer.json": 1}, "subfolders"),
        ({"config.json": 1, "tokenizer.json": 1}, "no weight files"),
    ],
)
def test_weight_files_gate(capability_table, host_16gb, files, words):
    v = decide(meta(config(), files), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_WEIGHTS
    assert words in v.reasons[0]
    assert v.weights_bytes is None and "as_is" not in v.memory


def test_sharded_weights_are_summed(capability_table, host_16gb):
    files = {"config.json": 1, "model-00001-of-00002.safetensors": 5 * GB, "model-00002-of-00002.safetensors": 3 * GB,
             "model.safetensors.index.json": 1, "tokenizer.json": 1}
    v = decide(meta(config(), files), capability_table, host_16gb)
    assert v.verdict == V.LOADS and v.weights_bytes == 8 * GB


def test_no_config_diffusers(capability_table, host_16gb):
    v = decide(meta(None, {"model_index.json": 1, "unet/diffusion_pytorch_model.safetensors": 3 * GB}),
               capability_table, host_16gb)
    assert v.verdict == V.NO_CONFIG and "diffusers" in v.reasons[0]
    assert v.model_type is None
    # every failing gate is listed, first one first
    assert any("subfolders" in r for r in v.reasons[1:])


def test_config_without_model_type(capability_table, host_16gb):
    v = decide(meta({"architectures": ["X"]}), capability_table, host_16gb)
    assert v.verdict == V.NO_CONFIG and "model_type" in v.reasons[0]


def test_model_file_needs_remote_code(capability_table, host_16gb):
    v = decide(meta(config(model_file="my_model.py")), capability_table, host_16gb)
    assert v.verdict == V.REMOTE_CODE and "trust_remote_code" in v.reasons[0]


def test_tokenizer_only_as_code(capability_table, host_16gb):
    files = {"config.json": 1, "model.safetensors": GB, "tokenization_x.py": 1, "tokenizer_config.json": 1}
    v = decide(meta(config(), files, tokenizer_config={"auto_map": {"AutoTokenizer": ["tokenization_x.XTok", None]}}),
               capability_table, host_16gb)
    assert v.verdict == V.REMOTE_CODE and "auto_map" in v.reasons[0]


def test_tokenizer_auto_map_with_tokenizer_json_loads(capability_table, host_16gb):
    v = decide(meta(config(), tokenizer_config={"auto_map": {"AutoTokenizer": ["a.B", None]}}), capability_table, host_16gb)
    assert v.verdict == V.LOADS


def test_no_tokenizer_files(capability_table, host_16gb):
    v = decide(meta(config(), {"config.json": 1, "model.safetensors": GB}), capability_table, host_16gb)
    assert v.verdict == V.NO_CONFIG and "tokenizer" in v.reasons[0]


def test_first_failure_in_loader_order_wins(capability_table, host_16gb):
    # bin-only weights AND an unknown architecture AND no tokenizer: the weights gate comes first in load_model.
    v = decide(meta(config(model_type="nope"), {"config.json": 1, "pytorch_model.bin": GB}), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_WEIGHTS
    assert len(v.reasons) == 3 and "nope" in v.reasons[1] and "tokenizer" in v.reasons[2]


# ---- quantization -------------------------------------------------------------------------------

def test_mlx_quantized_loads_and_counts_packed_params(capability_table, host_16gb):
    tensors = {
        "model.layers.0.mlp.up_proj.weight": ("U32", (1024, 128)),  # 1024 x 1024 at 4 bits
        "model.layers.0.mlp.up_proj.scales": ("BF16", (1024, 16)),
        "model.layers.0.mlp.up_proj.biases": ("BF16", (1024, 16)),
        "model.norm.weight": ("BF16", (1024,)),
    }
    v = decide(meta(config(quantization={"group_size": 64, "bits": 4}), tensors=tensors), capability_table, host_16gb)
    assert v.verdict == V.LOADS and v.quantization == "4-bit MLX"
    assert v.params == 1024 * 1024 + 1024


@pytest.mark.parametrize("qc", [
    {"quant_method": "mxfp4"}, {"quant_method": "mxfp8"}, {"quant_method": "bitnet"},
    {"quant_method": "fp8", "scale_fmt": "ue8m0", "weight_block_size": [32, 32]},
    {"quant_method": "compressed-tensors", "format": "pack-quantized"},
    {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized"},
    {"quant_method": "modelopt", "quant_algo": "NVFP4"},
])
def test_quantizations_that_load(capability_table, host_16gb, qc):
    v = decide(meta(config(quantization_config=qc), tensors={}), capability_table, host_16gb)
    assert v.verdict == V.LOADS, v.reasons


@pytest.mark.parametrize("qc, words", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes"),
    ({"quant_method": "hqq"}, "hqq"),
    ({"quant_method": "eetq"}, "eetq"),
    ({"quant_method": "compressed-tensors", "format": "float-quantized"}, "float-quantized"),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "NVFP4"),
    ({"quant_method": "awq", "bits": 8}, "4 bits"),
    ({"bits": 4}, "quant_method"),
])
def test_quantizations_that_fail(capability_table, host_16gb, qc, words):
    v = decide(meta(config(quantization_config=qc), tensors={}), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_QUANTIZATION
    assert words in v.reasons[0]


def test_quantization_config_under_text_config_and_in_hf_quant_config(capability_table, host_16gb):
    v = decide(meta(config(text_config={"quantization_config": {"quant_method": "hqq"}})), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_QUANTIZATION
    v = decide(meta(config(), hf_quant_config={"quantization": {"quant_algo": "FP8"}, "quant_method": "modelopt"}),
               capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_QUANTIZATION and "ModelOpt" in v.quantization


def test_fp8_dequantized_by_sanitize_doubles_memory(capability_table, host_16gb):
    qc = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    ds = {a: 1 for a in capability_table.modules["deepseek_v3"].required_args}
    v = decide(meta({**ds, "model_type": "deepseek_v3", "quantization_config": qc}, tensors={}), capability_table, host_16gb)
    assert v.verdict == V.LOADS and "twice" in v.reasons[-1]
    assert v.memory["as_is"].need_bytes > 2 * 16 * GB
    v = decide(meta(config(quantization_config=qc), tensors={}), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_QUANTIZATION and "`llama`" in v.reasons[0]


AWQ_TENSORS = {  # AutoAWQ layout: qweight [in, out/8], scales [in/group, out]
    "model.layers.0.mlp.up_proj.qweight": ("I32", (4096, 1792)),
    "model.layers.0.mlp.up_proj.qzeros": ("I32", (32, 1792)),
    "model.layers.0.mlp.up_proj.scales": ("F16", (32, 14336)),
}


def test_awq_4bit_loads(capability_table, host_16gb):
    v = decide(meta(config(quantization_config=AWQ), tensors=AWQ_TENSORS), capability_table, host_16gb)
    assert v.verdict == V.LOADS and v.quantization == "AWQ 4-bit"
    assert v.params == 4096 * 14336


def test_gptq_with_g_idx_fails(capability_table, host_16gb):
    tensors = dict(AWQ_TENSORS, **{"model.layers.0.mlp.up_proj.g_idx": ("I32", (4096,))})
    v = decide(meta(config(quantization_config={**AWQ, "quant_method": "gptq"}), tensors=tensors), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_QUANTIZATION and "g_idx" in v.reasons[0]


def test_gptq_layout_fails(capability_table, host_16gb):
    tensors = {  # GPTQ packs along the input: qweight [in/8, out]
        "model.layers.0.mlp.up_proj.qweight": ("I32", (512, 14336)),
        "model.layers.0.mlp.up_proj.qzeros": ("I32", (32, 1792)),
        "model.layers.0.mlp.up_proj.scales": ("F16", (32, 14336)),
    }
    v = decide(meta(config(quantization_config={**AWQ, "quant_method": "gptq"}), tensors=tensors), capability_table, host_16gb)
    assert v.verdict == V.UNSUPPORTED_QUANTIZATION and "GPTQ layout" in v.reasons[0]


def test_awq_without_tensor_names_says_so(capability_table, host_16gb):
    v = decide(meta(config(quantization_config=AWQ), tensors=None), capability_table, host_16gb)
    assert v.verdict == V.LOADS and any("could not be read" in r for r in v.reasons)


# ---- memory ---------------------------------------------------------------------------------------

def test_memory_fit_levels(capability_table):
    from bot.core.engine import HostMemory

    m = meta(config(), hub_parameters={"BF16": 8_000_000_000})
    big = decide(m, capability_table, HostMemory(64 * GB, "t"))
    assert big.memory["as_is"].status == "fits"
    small = decide(m, capability_table, HostMemory(8 * GB, "t"))
    assert small.memory["as_is"].status == "too_large"
    assert small.memory["4bit"].status in ("fits", "tight")
    assert small.memory["4bit"].need_bytes < small.memory["8bit"].need_bytes < small.memory["as_is"].need_bytes
    tight = decide(m, capability_table, HostMemory(int(small.memory["as_is"].need_bytes / 0.9), "t"))
    assert tight.memory["as_is"].status == "tight"


def test_kv_cache_counts(capability_table, host_16gb):
    from bot.core.memory import kv_cache_bytes

    assert kv_cache_bytes(config(), 4096) == 2 * 32 * 8 * 128 * 4096 * 2
    assert kv_cache_bytes({"text_config": config()}, 1) == 2 * 32 * 8 * 128 * 2
    assert kv_cache_bytes({}, 4096) == 0


def test_access_verdicts():
    v = access_verdict("o/n", None, V.GATED, "You must accept", "0.32")
    assert v.verdict == V.GATED and "HF_TOKEN" in v.reasons[0] and "You must accept" in v.reasons[0]
    v = access_verdict("o/n", "dev", V.NOT_FOUND, "", "0.32")
    assert "`dev`" in v.reasons[0]


def test_verdict_json_round_trip(capability_table, host_16gb):
    v = decide(meta(config(), hub_parameters={"BF16": 8}), capability_table, host_16gb)
    data = v.to_json()
    for key in ("repo", "verdict", "model_type", "module", "reasons", "weights_bytes", "params", "memory", "suggestions"):
        assert key in data
    assert V.Verdict.from_json(data).to_json() == data
