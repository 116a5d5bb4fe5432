"""A zoo of fake Hugging Face repos, one or more per verdict and per quantization branch.

Each entry pairs a FakeRepo with the verdict canrun must give for it, so the CLI, bot and benchmark
tests all check against the same ground truth. Sizes are declared, not stored: a "14 GB" weight
file is a real safetensors header followed by zeros the fake hub generates on demand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.fakes import model_headers as headers
from tests.fakes.hub import FakeFile, FakeHub, FakeRepo, safetensors_file
from tests.fakes.tiny_model import tokenizer_files

GB = 10**9
# A real tokenizer: the dry load and mlx-lm's load_tokenizer really load it.
TOKENIZER_JSON = json.loads(tokenizer_files()["tokenizer.json"])
TOKENIZER_CONFIG = json.loads(tokenizer_files()["tokenizer_config.json"])

GPT2_MERGES = "#version: 0.2\n" + "".join(
    (m if isinstance(m, str) else " ".join(m)) + "\n" for m in TOKENIZER_JSON["model"]["merges"])

LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
    "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-5,
    "vocab_size": 32000, "torch_dtype": "float16", "tie_word_embeddings": False,
}
MISTRAL = {**LLAMA, "model_type": "mistral", "architectures": ["MistralForCausalLM"], "intermediate_size": 14336,
           "num_key_value_heads": 8, "torch_dtype": "bfloat16"}
QWEN3 = {
    "model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28, "intermediate_size": 3072,
    "num_attention_heads": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-6, "vocab_size": 151936,
    "max_position_embeddings": 40960, "rope_theta": 1000000, "head_dim": 128, "tie_word_embeddings": True,
}


def weights(params: int, dtype: str = "BF16", name: str = "model.layers.0.mlp.weight") -> FakeFile:
    """A safetensors file holding `params` parameters (as one tensor, enough for sizes and counts)."""
    return safetensors_file({name: (dtype, [params])})


def shards(tensors: headers.Tensors, parts: int = 1) -> dict[str, FakeFile]:
    """Weight files named as transformers names them, each a real header over zeros."""
    if parts == 1:
        return {"model.safetensors": safetensors_file(tensors)}
    pieces = headers.split(tensors, parts)
    files = {f"model-{i:05d}-of-{len(pieces):05d}.safetensors": safetensors_file(p) for i, p in enumerate(pieces, 1)}
    files["model.safetensors.index.json"] = {"metadata": {}, "weight_map": {
        name: shard for shard, piece in zip(files, pieces, strict=True) for name in piece}}
    return files


def text_repo(config: dict, weight_files: dict[str, FakeFile], **kw) -> dict:
    files = {"config.json": config, "tokenizer.json": TOKENIZER_JSON, "tokenizer_config.json": TOKENIZER_CONFIG}
    files.update(weight_files)
    files.update(kw.pop("extra", {}))
    return files


GPTQ_TENSORS = {  # GPTQ layout: qweight [in/8, out], with g_idx
    "model.layers.0.mlp.up_proj.qweight": ("I32", [512, 11008]),
    "model.layers.0.mlp.up_proj.qzeros": ("I32", [32, 1376]),
    "model.layers.0.mlp.up_proj.scales": ("F16", [32, 11008]),
    "model.layers.0.mlp.up_proj.g_idx": ("I32", [4096]),
}


@dataclass(frozen=True)
class ZooEntry:
    repo: FakeRepo
    verdict: str | None  # None: not a verdict fixture (a conversion or base model other entries point at)
    words: str = ""  # a phrase the first reason must contain


def zoo() -> list[ZooEntry]:
    Q4 = {"group_size": 64, "bits": 4}
    return [
        ZooEntry(FakeRepo("mlx-community/Qwen3-0.6B-4bit", text_repo(
            {**QWEN3, "quantization": Q4}, shards(headers.mlx_quantized(QWEN3))),
            tags=["mlx", "safetensors", "base_model:Qwen/Qwen3-0.6B"], downloads=90_000), "loads", "qwen3"),
        ZooEntry(FakeRepo("mistralai/Mistral-7B-v0.1", text_repo(MISTRAL, {
            **shards(headers.dense(MISTRAL), parts=2),
            "pytorch_model-00001-of-00002.bin": FakeFile(b"", 10 * GB)}), downloads=500_000), "loads", "MODEL_REMAPPING"),
        ZooEntry(FakeRepo("mlx-community/Mistral-7B-v0.1-4bit", text_repo(
            {**MISTRAL, "quantization": Q4}, {"model.safetensors": weights(1_000_000_000, "U32")}),
            tags=["mlx", "base_model:mistralai/Mistral-7B-v0.1", "base_model:quantized:mistralai/Mistral-7B-v0.1"],
            downloads=40_000), None),
        ZooEntry(FakeRepo("mlx-community/Mistral-7B-v0.1-8bit", text_repo(
            {**MISTRAL, "quantization": {"group_size": 64, "bits": 8}}, {"model.safetensors": weights(2_000_000_000, "U32")}),
            tags=["mlx", "base_model:mistralai/Mistral-7B-v0.1"], downloads=60_000), None),
        ZooEntry(FakeRepo("meta-llama/Llama-3.1-8B", text_repo(LLAMA, {"model.safetensors": weights(8_000_000_000)}),
                          gated="manual"), "gated", "gated"),
        ZooEntry(FakeRepo("NousResearch/Llama-2-7b-hf", text_repo(LLAMA, shards(headers.dense(LLAMA, "F16"), parts=2))),
                 "loads"),
        ZooEntry(FakeRepo("TheBloke/Llama-2-7B-GGUF", {
            "config.json": {"model_type": "llama"}, "llama-2-7b.Q4_K_M.gguf": FakeFile(b"GGUF", 4 * GB)},
            tags=["gguf", "base_model:NousResearch/Llama-2-7b-hf"], card_data={"base_model": "NousResearch/Llama-2-7b-hf"}),
            "unsupported_weights", "GGUF"),
        ZooEntry(FakeRepo("mlx-community/Llama-2-7b-hf-4bit", text_repo(
            {**LLAMA, "quantization": Q4}, {"model.safetensors": weights(900_000_000, "U32")}),
            tags=["mlx", "base_model:NousResearch/Llama-2-7b-hf"], downloads=3_000), None),
        ZooEntry(FakeRepo("old-lab/bin-only-7b", text_repo(LLAMA, {"pytorch_model.bin": FakeFile(b"", 13 * GB)})),
                 "unsupported_weights", ".bin"),
        ZooEntry(FakeRepo("stabilityai/sd-like", {
            "model_index.json": {"_class_name": "StableDiffusionPipeline"},
            "unet/diffusion_pytorch_model.safetensors": weights(800_000_000, "F16")}), "no_config", "diffusers"),
        ZooEntry(FakeRepo("odd-lab/broken-config", text_repo(LLAMA, {"model.safetensors": weights(1000)},
                          extra={"config.json": b"{not json"})), "no_config", "does not parse"),
        ZooEntry(FakeRepo("odd-lab/custom-model-file", text_repo({**LLAMA, "model_file": "modeling.py"},
                          {"model.safetensors": weights(1000)}, extra={"modeling.py": "import os\n"})),
                 "remote_code", "model_file"),
        ZooEntry(FakeRepo("odd-lab/remote-tokenizer", {
            "config.json": LLAMA, **shards(headers.dense(LLAMA, "F16")), "tokenization_odd.py": "class T: ...\n",
            "tokenizer_config.json": {"auto_map": {"AutoTokenizer": ["tokenization_odd.T", None]}}}),
            "remote_code", "auto_map"),
        # auto_map beside a tokenizer class transformers has itself, and its vocabulary files: without
        # trust_remote_code transformers uses its own class, and mlx-lm loads the tokenizer.
        ZooEntry(FakeRepo("odd-lab/auto-map-known-tokenizer", {
            "config.json": LLAMA, **shards(headers.dense(LLAMA, "F16")), "tokenization_odd.py": "class T: ...\n",
            "tokenizer_config.json": {**TOKENIZER_CONFIG, "tokenizer_class": "GPT2Tokenizer",
                                      "auto_map": {"AutoTokenizer": ["tokenization_odd.T", None]}},
            "vocab.json": TOKENIZER_JSON["model"]["vocab"], "merges.txt": GPT2_MERGES}), "loads", "llama"),
        ZooEntry(FakeRepo("future-lab/Qwen9-Next", text_repo({**QWEN3, "model_type": "qwen9_next"},
                          {"model.safetensors": weights(1000)}), downloads=10), "unsupported_architecture", "qwen9_next"),
        ZooEntry(FakeRepo("future-lab/Nova-2", text_repo({**QWEN3, "model_type": "nova2"},
                          {"model.safetensors": weights(1000)})), "unsupported_architecture", "nova2"),
        ZooEntry(FakeRepo("odd-lab/helper-named", text_repo({**QWEN3, "model_type": "ssm"},
                          {"model.safetensors": weights(1000)})), "unsupported_architecture", "ssm"),
        ZooEntry(FakeRepo("allenai/OLMo-1B", text_repo({"model_type": "olmo", "d_model": 2048, "n_layers": 16},
                          {"model.safetensors": weights(1_176_764_416)})), "unsupported_architecture", "ai2-olmo"),
        ZooEntry(FakeRepo("TheBloke/Llama-2-7B-AWQ", text_repo(
            {**LLAMA, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}},
            shards(headers.awq(LLAMA)))), "loads", "llama"),
        ZooEntry(FakeRepo("TheBloke/Llama-2-7B-GPTQ", text_repo(
            {**LLAMA, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}},
            {"model.safetensors": safetensors_file(GPTQ_TENSORS)}), tags=["base_model:NousResearch/Llama-2-7b-hf"]),
            "unsupported_quantization", "g_idx"),
        ZooEntry(FakeRepo("unsloth/llama-bnb-4bit", text_repo(
            {**LLAMA, "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}},
            shards(headers.bitsandbytes_nf4(LLAMA))),
            tags=["base_model:NousResearch/Llama-2-7b-hf"]), "unsupported_quantization", "bitsandbytes"),
        ZooEntry(FakeRepo("odd-lab/llama-fp8", text_repo(
            {**LLAMA, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}},
            shards(headers.fp8_blocks(LLAMA)))),
            "unsupported_quantization", "FP8"),
        ZooEntry(FakeRepo("odd-lab/llama-compressed", text_repo(
            {**LLAMA, "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized"}},
            shards(headers.compressed_pack_quantized(LLAMA)))),
            # llama's sanitize does not rename weight_packed/weight_scale, so mlx-lm 0.32 cannot load it
            "unsupported_quantization", "mlx-lm"),
        ZooEntry(FakeRepo("odd-lab/llama-hqq-in-text-config", text_repo(
            {"model_type": "llava", "text_config": {**LLAMA, "quantization_config": {"quant_method": "hqq"}},
             "vision_config": {}}, {"model.safetensors": weights(1000)})), "unsupported_quantization", "hqq"),
        ZooEntry(FakeRepo("odd-lab/no-tokenizer", {"config.json": LLAMA, "model.safetensors": weights(1000)}),
                 "no_config", "tokenizer"),
        ZooEntry(FakeRepo("mistralai/Mistral-consolidated", {
            "params.json": {"dim": 4096}, "consolidated.safetensors": weights(7_000_000_000), "tokenizer.model": b"x"}),
            "no_config", "params.json"),
    ]


def populate(hub: FakeHub) -> list[ZooEntry]:
    entries = zoo()
    for entry in entries:
        hub.add_repo(entry.repo)
    return entries


def verdict_cases() -> list[ZooEntry]:
    return [e for e in zoo() if e.verdict is not None]
