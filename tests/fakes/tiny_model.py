"""Tiny but real model folders that the installed mlx-lm loads and runs on CPU.

Each builder returns `{relative path: file bytes}` (what `FakeRepo` serves); `write_model` puts one on disk:

    path = write_model(tmp_path / "model", tiny_llama_files(quantize_bits=4))
    model, tokenizer = mlx_lm.load(str(path))

The weights are random: the folders prove that a layout loads and runs, not that it says anything sensible
(except `trained_llama_files`, trained on one text until it predicts it well).
Builders with the same sizes and seed start from the same float weights, so a packed checkpoint can be
checked against its float twin.
"""

from __future__ import annotations

import functools

import contextlib
import io
import json
import math
import re
import string
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.utils import _get_classes, quantize_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

Files = dict[str, bytes]

# About 100M parameters (tied embeddings), for benchmarks: `tiny_llama_files(**LLAMA_100M)`.
LLAMA_100M: dict[str, int] = dict(hidden_size=768, layers=12, heads=12, kv_heads=4, intermediate=2048, vocab_size=32000)

# Llama 2's ids for the special tokens; config.json repeats them.
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [UNK, BOS, EOS]

# Enough distinct words for a 256-token BPE vocabulary; larger vocabularies stop when the merges run out.
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "pack my box with five dozen liquor jugs",
    "how vexingly quick daft zebras jump",
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
    "twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million billion",
    "can this model load in mlx? it loads, it runs, it generates tokens on the cpu.",
    "quantized weights: scales, biases, zeros and groups of 32 or 64 values packed into int32 words",
    "Hello, World! Attention, rotary embeddings, normalization and feed-forward layers.",
]
_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tokenizer_files(dest: Path, vocab_size: int = 256) -> None:
    """Write a real BPE tokenizer (tokenizer.json and its configs) of at most `vocab_size` ids into `dest`.

    Characters outside printable ASCII become <unk>. A model vocabulary larger than the tokenizer's is fine,
    as in many real checkpoints.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in _tokenizer_files(vocab_size).items():
        (dest / name).write_bytes(data)


def tiny_llama_files(
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = 256,
    seed: int = 0,
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16",
    quantize_bits: int | None = None,
    shards: int = 1,
) -> Files:
    """A random Llama; with `quantize_bits`, MLX-quantized (group size 64) as `mlx_lm.convert -q` writes it.
    With `shards` > 1 the weights are split by layer into `model-0000i-of-0000n.safetensors` files with their
    `model.safetensors.index.json` (at most one shard per layer)."""
    config = _llama_config(hidden_size, layers, heads, kv_heads, intermediate, vocab_size, dtype)
    model = _random_model(config, seed)
    if quantize_bits is not None:
        # mlx_lm.convert's own quantizer, so the config keys and tensor names are the ones it writes.
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the bits per weight
            model, config = quantize_model(model, config, group_size=None, bits=quantize_bits)
    weights = dict(tree_flatten(model.parameters()))
    return _model_files(config, weights, {"format": "mlx"}, shards=shards)


# Small enough that a few hundred training steps take seconds on a CPU.
TRAINED_SIZES: dict[str, int] = dict(hidden_size=32, layers=2, heads=4, kv_heads=2, intermediate=64, vocab_size=256)


@functools.lru_cache(maxsize=4)
def trained_llama_files(text: str, max_tokens: int, *, steps: int = 400, target_loss: float = 1.0,
                        seed: int = 0) -> Files:
    """A float32 Llama of TRAINED_SIZES trained with Adam on the first `max_tokens` tokens of `text` (as its
    tokenizer encodes it, BOS first) until its mean loss is under `target_loss` nats, at most `steps` steps:
    it predicts that text well (a perplexity of about e^target_loss). `trained_llama_files(..., steps=0)` is the
    same shape with its random starting weights. Cached: built once per test session."""
    import mlx.optimizers as optim

    config = _llama_config(**TRAINED_SIZES, dtype="float32")
    model = _random_model(config, seed)
    ids = Tokenizer.from_str(_tokenizer_files(config["vocab_size"])["tokenizer.json"].decode()).encode(text).ids
    tokens = mx.array(ids[:max_tokens])[None]

    def loss(m: nn.Module) -> mx.array:
        return nn.losses.cross_entropy(m(tokens[:, :-1]), tokens[:, 1:], reduction="mean")

    optimizer = optim.Adam(learning_rate=2e-2)
    loss_and_grad = nn.value_and_grad(model, loss)
    for _ in range(steps):
        value, grads = loss_and_grad(model)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, value)
        if value.item() < target_loss:
            break
    return _model_files(config, dict(tree_flatten(model.parameters())), {"format": "mlx"})


def tiny_awq_files(
    layout: Literal["awq", "gptq"] = "awq",
    *,
    with_g_idx: bool = False,
    group_size: int = 32,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = 256,
    seed: int = 0,
) -> Files:
    """A random Llama whose decoder linears are 4-bit packed as AutoAWQ ("awq") or AutoGPTQ ("gptq") saves them.

    The float weights are those of `tiny_llama_files(dtype="float16")` with the same sizes and seed.
    """
    config = _llama_config(hidden_size, layers, heads, kv_heads, intermediate, vocab_size, "float16")
    if layout == "awq":
        config["quantization_config"] = {
            "quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": True, "version": "gemm",
        }
    else:
        config["quantization_config"] = {
            "quant_method": "gptq", "bits": 4, "group_size": group_size, "desc_act": False, "sym": False,
            "checkpoint_format": "gptq",
        }

    def pack(prefix: str, w: np.ndarray) -> dict[str, np.ndarray]:
        q, zeros, scales = _quantize_4bit(w, group_size)  # [in, out], [groups, out], [groups, out]
        if layout == "awq":
            tensors = {"qweight": _pack_rows(q, _AWQ_ORDER), "qzeros": _pack_rows(zeros, _AWQ_ORDER)}
        else:
            tensors = {
                "qweight": _pack_rows(q.T, _GPTQ_ORDER).T,  # packed along the input dimension
                "qzeros": _pack_rows((zeros - 1) & 0xF, _GPTQ_ORDER),  # GPTQ's v1 format stores zero - 1
            }
        tensors["scales"] = scales
        if with_g_idx:
            tensors["g_idx"] = (np.arange(w.shape[1]) // group_size).astype(np.int32)
        return {f"{prefix}.{k}": v for k, v in tensors.items()}

    return _packed_llama_files(config, seed, pack, {"format": "pt"})


def tiny_bnb_files(*, seed: int = 0, **sizes: int) -> Files:
    """A random Llama in the bitsandbytes 4-bit (nf4) layout: uint8 `weight` plus `.absmax`, `.quant_map`
    and `.quant_state` tensors. Only the names, shapes and dtypes are bitsandbytes'; the codes are random."""
    config = _llama_config(**{**_TINY_SIZES, **sizes}, dtype="float16")
    config["quantization_config"] = {
        "quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16", "bnb_4bit_use_double_quant": False,
    }
    rng = np.random.default_rng(seed)
    state = np.frombuffer(json.dumps({"quant_type": "nf4", "blocksize": 64}).encode(), dtype=np.uint8)

    def pack(prefix: str, w: np.ndarray) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": rng.integers(0, 256, (w.size // 2, 1), dtype=np.uint8),  # two codes a byte
            f"{prefix}.weight.absmax": np.abs(w).reshape(-1, 64).max(-1),
            f"{prefix}.weight.quant_map": np.linspace(-1, 1, 16, dtype=np.float32),
            f"{prefix}.weight.quant_state.bitsandbytes__nf4": state.copy(),
        }

    return _packed_llama_files(config, seed, pack, {"format": "pt"})


def tiny_compressed_tensors_files(*, group_size: int = 32, seed: int = 0, **sizes: int) -> Files:
    """A random Llama in compressed-tensors' `pack-quantized` layout (llm-compressor's W4A16): per linear an
    int32 `weight_packed` [out, in / 8], `weight_scale` [out, in / group_size] and `weight_shape`."""
    config = _llama_config(**{**_TINY_SIZES, **sizes}, dtype="float16")
    config["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
        "config_groups": {"group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": group_size},
        }},
        "ignore": ["lm_head"],
    }

    def pack(prefix: str, w: np.ndarray) -> dict[str, np.ndarray]:
        q, _, scales = _quantize_4bit(w, group_size)
        return {
            f"{prefix}.weight_packed": _pack_rows(q.T, _GPTQ_ORDER),
            f"{prefix}.weight_scale": scales.T,
            f"{prefix}.weight_shape": np.array(w.shape, dtype=np.int64),
        }

    return _packed_llama_files(config, seed, pack, {"format": "pt"})


def tiny_mixtral_files(*, experts: int = 4, seed: int = 0, **sizes: int) -> Files:
    """A random Mixtral saved with Hugging Face's names, one tensor per expert
    (`block_sparse_moe.experts.E.w1.weight`): mixtral's sanitize stacks them into mlx-lm's `switch_mlp`.
    Float32, since MLX's CPU expert matmul (GatherMM) runs only in float32."""
    config = {
        **_llama_config(**{**_TINY_SIZES, **sizes}, dtype="float32"),
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "tie_word_embeddings": False,
        "num_local_experts": experts, "num_experts_per_tok": 2,
    }
    weights = _unstack_experts(_random_weights(config, seed), "block_sparse_moe", _MIXTRAL_EXPERT_NAMES)
    return _model_files(config, weights, {"format": "pt"})


def tiny_deepseek_v3_fp8_files(*, seed: int = 0) -> Files:
    """A random DeepSeek-V3 (MLA attention, one dense layer, then routed and shared experts) as DeepSeek
    publishes it: per-expert tensors, one `kv_b_proj`, and block-wise FP8 linears (see `_fp8_files`).
    deepseek_v3's sanitize dequantizes (to bfloat16: it loads, but its experts do not run on MLX's CPU),
    splits and stacks them."""
    config = {
        **_llama_config(**_TINY_SIZES, dtype="bfloat16"),
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "tie_word_embeddings": False,
        "num_key_value_heads": _TINY_SIZES["heads"], "moe_intermediate_size": 32, "first_k_dense_replace": 1,
        "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
        "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16,
    }
    weights = _merged_kv_b_proj(_unstack_experts(_random_weights(config, seed), "mlp", {}))
    return _fp8_files(config, weights)


def tiny_llama_fp8_files(*, seed: int = 0, **sizes: int) -> Files:
    """A random Llama in DeepSeek's block-wise FP8 layout (see `_fp8_files`), which llama's sanitize does not
    dequantize."""
    config = _llama_config(**{**_TINY_SIZES, **sizes}, dtype="bfloat16")
    return _fp8_files(config, _random_weights(config, seed))


def with_config(files: Files, **changes: Any) -> Files:
    """`files` with keys of config.json added or replaced."""
    return {**files, "config.json": _json({**json.loads(files["config.json"]), **changes})}


def without_tensor(files: Files, name: str) -> Files:
    """`files` with one tensor left out of model.safetensors; the config still asks for it."""
    weights, metadata = _weights_of(files)
    del weights[name]
    return {**files, "model.safetensors": _safetensors(weights, metadata)}


def with_tensor_shape(files: Files, name: str, shape: tuple[int, ...]) -> Files:
    """`files` with one tensor of model.safetensors given another shape (zeros of its dtype)."""
    weights, metadata = _weights_of(files)
    weights[name] = mx.zeros(shape, dtype=weights[name].dtype)
    return {**files, "model.safetensors": _safetensors(weights, metadata)}


def code_only_tokenizer(files: Files) -> Files:
    """`files` whose tokenizer exists only as the repo's Python code: `auto_map` in tokenizer_config.json,
    a `tokenization_tiny.py` and a vocabulary, no tokenizer.json. The code raises if anything runs it."""
    tokenizer_config = json.loads(files["tokenizer_config.json"])
    tokenizer_config.update(
        tokenizer_class="TinyTokenizer", auto_map={"AutoTokenizer": ["tokenization_tiny.TinyTokenizer", None]}
    )
    out = {name: data for name, data in files.items() if name != "tokenizer.json"}
    out["tokenizer_config.json"] = _json(tokenizer_config)
    out["vocab.json"] = _json(json.loads(files["tokenizer.json"])["model"]["vocab"])
    out["tokenization_tiny.py"] = b'raise RuntimeError("a repo\'s tokenizer code was run")\n'
    return out


def write_model(dest: Path, files: Files) -> Path:
    """Write `files` under `dest` (created if needed) and return `dest`."""
    for name, data in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


def params_of(files: Files) -> int:
    """The model's true parameter count: packed weights count their unpacked elements, quantization
    metadata (scales, biases, zeros, g_idx) counts nothing. Covers plain, MLX, AWQ and GPTQ checkpoints."""
    config = json.loads(files["config.json"])
    quant = config.get("quantization") or config.get("quantization_config") or {}
    per_word = 32 // quant.get("bits", 32)  # values packed in one 32-bit word
    total = 0
    for name, data in files.items():
        if not name.endswith(".safetensors"):
            continue
        for tensor, info in _safetensors_header(data).items():
            if tensor == "__metadata__" or tensor.endswith((".scales", ".biases", ".qzeros", ".g_idx")):
                continue
            packed = tensor.endswith(".qweight") or info["dtype"] in ("U32", "I32")
            total += math.prod(info["shape"]) * (per_word if packed else 1)
    return total


# --- internals ---------------------------------------------------------------------------------------------

_TINY_SIZES = dict(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab_size=256)

# Nibble j of a packed word holds column ORDER[j]. AutoAWQ interleaves; mlx-lm unpacks with the inverse,
# [0, 4, 1, 5, 2, 6, 3, 7].
_AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
_GPTQ_ORDER = list(range(8))

# Hugging Face's names of Mixtral's expert linears, by mlx-lm's.
_MIXTRAL_EXPERT_NAMES = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}
FP8_BLOCK = 128  # DeepSeek's weight_block_size
FP8_E4M3_MAX = 448.0


@functools.lru_cache(maxsize=8)
def tokenizer_files(vocab_size: int = 256) -> Files:
    """A real, trained BPE tokenizer (tokenizer.json and its config), as transformers loads it."""
    return _tokenizer_files(vocab_size)


def _tokenizer_files(vocab_size: int) -> Files:
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    alphabet = list(string.ascii_letters + string.digits + string.punctuation)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    if tokenizer.get_vocab_size() > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is below the {tokenizer.get_vocab_size()} base tokens")
    # Prepend <s> to every encoding, as Llama does.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, SPECIAL_TOKENS.index(BOS))]
    )
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 2048,
        "chat_template": _CHAT_TEMPLATE,
        **special,
    }
    return {
        "tokenizer.json": tokenizer.to_str().encode(),
        "tokenizer_config.json": _json(tokenizer_config),
        "special_tokens_map.json": _json(special),
    }


def _llama_config(
    hidden_size: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab_size: int, dtype: str
) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": intermediate,
        "vocab_size": vocab_size,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
        "torch_dtype": dtype,
    }


def _random_model(config: dict[str, Any], seed: int) -> nn.Module:
    """The installed mlx-lm's model for `config["model_type"]`, with random weights of the config's dtype."""
    mx.random.seed(seed)  # mlx initialises layers from its global generator
    model_class, args_class = _get_classes(config=config)
    model = model_class(args_class.from_dict(config))
    model.set_dtype(getattr(mx, config["torch_dtype"]))
    return model


def _random_weights(config: dict[str, Any], seed: int) -> dict[str, mx.array]:
    """mlx-lm's parameter names and shapes for `config` (after its sanitize), with random values."""
    return dict(tree_flatten(_random_model(config, seed).parameters()))


def _unstack_experts(weights: dict[str, mx.array], parent: str, names: dict[str, str]) -> dict[str, mx.array]:
    """Undo the stacking a MoE sanitize does: `{parent}.switch_mlp.P.weight` [E, ...] becomes E tensors
    `{parent}.experts.e.N.weight`, N being `names.get(P, P)`."""
    out = {}
    for key, w in weights.items():
        head, found, tail = key.partition(f".{parent}.switch_mlp.")
        if not found:
            out[key] = w
            continue
        projection, _, kind = tail.partition(".")
        for e in range(w.shape[0]):
            out[f"{head}.{parent}.experts.{e}.{names.get(projection, projection)}.{kind}"] = w[e]
    return out


def _merged_kv_b_proj(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Undo deepseek's split of MLA's `kv_b_proj` [heads * (nope + v), kv_lora_rank] into the per-head
    `embed_q` [heads, kv_lora_rank, nope] and `unembed_out` [heads, v, kv_lora_rank]."""
    out = {}
    for key, w in weights.items():
        if key.endswith(".embed_q.weight"):
            prefix = key.removesuffix(".embed_q.weight")
            per_head = mx.concatenate([w.swapaxes(-1, -2), weights[f"{prefix}.unembed_out.weight"]], axis=1)
            out[f"{prefix}.kv_b_proj.weight"] = per_head.reshape(-1, per_head.shape[-1])
        elif not key.endswith(".unembed_out.weight"):
            out[key] = w
    return out


def _fp8_files(config: dict[str, Any], weights: dict[str, mx.array]) -> Files:
    """A checkpoint in DeepSeek's FP8 layout: each 2-D linear of the decoder layers stored as F8_E4M3 codes
    with an F32 `weight_scale_inv` per 128x128 block (weight = code * scale_inv); the rest stays as it is."""
    config = {**config, "quantization_config": {
        "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [FP8_BLOCK] * 2,
    }}
    out, fp8_names = {}, []
    for name, w in weights.items():
        if ".layers." in name and name.endswith("_proj.weight") and w.ndim == 2:
            out[name], out[f"{name}_scale_inv"] = _fp8_blocks(w)
            fp8_names.append(name)
        else:
            out[name] = w
    return _model_files(config, out, {"format": "pt"}, dtypes=dict.fromkeys(fp8_names, "F8_E4M3"))


def _fp8_blocks(w: mx.array) -> tuple[mx.array, mx.array]:
    """FP8 E4M3 codes of `w` [m, n] (as uint8: MLX has no fp8 dtype) and the float32 scale of each
    128x128 block [ceil(m / 128), ceil(n / 128)]."""
    m, n = w.shape
    padded = mx.pad(w.astype(mx.float32), ((0, -m % FP8_BLOCK), (0, -n % FP8_BLOCK)))
    rows, cols = padded.shape[0] // FP8_BLOCK, padded.shape[1] // FP8_BLOCK
    blocks = padded.reshape(rows, FP8_BLOCK, cols, FP8_BLOCK)
    scales = mx.maximum(mx.abs(blocks).max(axis=(1, 3)), 1e-12) / FP8_E4M3_MAX
    codes = (blocks / scales[:, None, :, None]).reshape(padded.shape)[:m, :n]
    return mx.to_fp8(codes), scales


def _packed_llama_files(
    config: dict[str, Any], seed: int, pack: Callable[[str, np.ndarray], dict[str, np.ndarray]], metadata: dict
) -> Files:
    """A random Llama with each decoder linear replaced by the tensors of `pack(prefix, weight[out, in])`;
    the embeddings and norms stay float, as quantizers leave them."""
    model = _random_model(config, seed)
    weights: dict[str, Any] = {}
    for name, w in tree_flatten(model.parameters()):
        if ".layers." in name and name.endswith("_proj.weight"):
            weights.update(pack(name.removesuffix(".weight"), np.array(w, dtype=np.float32)))
        else:
            weights[name] = w
    return _model_files(config, {k: mx.array(v) for k, v in weights.items()}, metadata)


def _quantize_4bit(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric 4-bit quantization of `w` [out, in] in groups along the input, so that
    w ~ (q - zero) * scale. Returns q [in, out], zeros and float16 scales [in / group_size, out]."""
    out_features, in_features = w.shape
    groups = w.reshape(out_features, in_features // group_size, group_size)
    low, high = groups.min(-1), groups.max(-1)
    scales = (np.maximum(high - low, 1e-4) / 15).astype(np.float16)
    s = scales.astype(np.float32)[..., None]
    zeros = np.clip(np.round(-low / scales), 0, 15).astype(np.uint32)
    q = np.clip(np.round(groups / s) + zeros[..., None], 0, 15).astype(np.uint32)
    return q.reshape(out_features, in_features).T, zeros.T, scales.T


def _pack_rows(values: np.ndarray, order: list[int]) -> np.ndarray:
    """Pack 4-bit `values` [rows, cols] into int32 [rows, cols / 8], eight consecutive columns a word."""
    rows, cols = values.shape
    nibbles = values.astype(np.uint32).reshape(rows, cols // 8, 8)[..., order]
    words = (nibbles << (4 * np.arange(8, dtype=np.uint32))).sum(-1, dtype=np.uint32)
    return words.view(np.int32)


def _model_files(
    config: dict[str, Any], weights: dict[str, mx.array], metadata: dict[str, str], *, shards: int = 1,
    dtypes: dict[str, str] | None = None,
) -> Files:
    """Tokenizer, config and weights; `dtypes` names the safetensors dtype of tensors MLX cannot hold (fp8)."""
    files = _tokenizer_files(config["vocab_size"])
    files["config.json"] = _json(config)
    if shards == 1:
        files["model.safetensors"] = _safetensors(weights, metadata, dtypes)
        return files
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = {key: names[_shard_of(key, shards)] for key in weights}
    for name in names:
        part = {key: w for key, w in weights.items() if weight_map[key] == name}
        if not any(".layers." in key for key in part):
            raise ValueError(f"{shards} shards for fewer layers")
        files[name] = _safetensors(part, metadata, dtypes)
    index = {"metadata": {"total_size": sum(w.nbytes for w in weights.values())}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = _json(index)
    return files


def _shard_of(key: str, shards: int) -> int:
    """Layer i goes to shard i mod `shards`; what belongs to no layer (embeddings, final norm) to the first."""
    layer = re.search(r"\.layers\.(\d+)\.", key)
    return int(layer.group(1)) % shards if layer else 0


def _safetensors(weights: dict[str, mx.array], metadata: dict[str, str], dtypes: dict[str, str] | None = None) -> bytes:
    # mlx's own writer (the one mlx_lm.convert uses), through a file since it only writes paths.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        mx.save_safetensors(str(path), weights, metadata=metadata)
        data = path.read_bytes()
    return _retyped(data, dtypes) if dtypes else data


def _retyped(data: bytes, dtypes: dict[str, str]) -> bytes:
    """A safetensors file with the header's dtype of some tensors replaced (same element size: U8 -> F8_E4M3)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    for name, dtype in dtypes.items():
        if name in header:
            header[name]["dtype"] = dtype
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # tensor data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def _weights_of(files: Files) -> tuple[dict[str, mx.array], dict[str, str]]:
    """The tensors and metadata of model.safetensors."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(files["model.safetensors"])
        weights, metadata = mx.load(str(path), return_metadata=True)
        mx.eval(weights)  # read before the file goes
        return weights, metadata


def _safetensors_header(data: bytes) -> dict[str, Any]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()
