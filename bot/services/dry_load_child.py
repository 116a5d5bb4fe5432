"""The dry-load prober process: the installed mlx-lm's own loading code, run on metadata only.

Started by bot.services.prober as `python -m bot.services.dry_load_child [--remap TYPE=MODULE ...]`.
It imports mlx-lm once, says hello (versions, the file patterns mlx-lm downloads), then answers one
JSON request per line: {"id", "path", "conversions": [[bits, group_size], ...]}.

The folder it is given holds the repo's real small files and, for the weights, safetensors files that
carry the real headers over sparse zeros (bot.services.placeholders). MLX is lazy: `mx.load` maps
nothing, and building, `sanitize`, quantization and `load_weights(strict=True)` only compute shapes, so a
1T-parameter model "loads" without a byte of weights. Nothing here evaluates an array.

Safety: stdin is /dev/null for everything the loader runs (transformers asks on stdin before running a
repo's code: closed, it refuses), requests come on a private copy of the original stdin; anything the
loader prints goes to stderr, answers go on a private copy of stdout. No trust_remote_code, and the
folder never holds a `.py` file. HF_HUB_OFFLINE is set by the parent.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import io
import json
import os
import signal
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from bot.services.environment import installed_fingerprint

MAX_FRAMES = 200  # distinct function names kept from the traceback: they tell which step failed
# What a dry load built, kept until its answer is sent (freeing a large lazy graph takes a while).
_garbage: list[Any] = []


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _private_streams() -> tuple[TextIO, TextIO]:
    """Requests and answers on private copies of stdin/stdout; the loader sees /dev/null and stderr."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.stdout = sys.stderr
    return requests, answers


def _failure(phase: str, e: BaseException, printed: str = "") -> dict[str, Any]:
    # Every function name on the way down (once each): the outer ones (load_weights, _quantize) decide the verdict.
    frames = list(dict.fromkeys(f.name for f in traceback.extract_tb(e.__traceback__)))[:MAX_FRAMES]
    message = str(e).strip() or type(e).__name__
    if isinstance(e, SystemExit):  # a module ended the process on import (olmo without ai2-olmo): say what it printed
        last = printed.strip().splitlines()[-1:] or [f"exit code {e.code}"]
        message = f"importing the model's module ended the process: {last[0]}"
    return {"ok": False, "phase": phase, "error_type": type(e).__name__, "message": message[:2000], "frames": frames}


def _parameter_bytes(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


def _parameter_count(model) -> int:
    """Parameters as the model defines them: packed quantized weights count 32/bits each (MXFP4, AWQ, MLX)."""
    import mlx_lm.utils as utils

    count = getattr(utils, "get_total_parameters", None)
    if count is not None:
        return int(count(model))
    from mlx.utils import tree_flatten

    total = 0
    for _, m in _leaves(model):
        if hasattr(m, "bits"):
            total += m.weight.size * 32 // m.bits + (m.bias.size if "bias" in m else 0)
        else:
            total += sum(v.size for _, v in tree_flatten(m.parameters()))
    return total


def _experts(model) -> tuple[int, int | None]:
    """Bytes of the stacked expert weights (mlx-lm's SwitchLinear layers, `switch_mlp` / `experts`) and how many
    experts each holds (their first dimension): what an MoE token reads only a share of."""
    from mlx.utils import tree_flatten

    total, count = 0, None
    for path, value in tree_flatten(model.parameters()):
        if ("switch_mlp" in path or ".experts." in path) and value.ndim >= 3:
            total += value.nbytes
            count = count or int(value.shape[0])
    return total, count


def _is_quantized(model) -> bool:
    return any(hasattr(m, "bits") for _, m in _leaves(model))


def _kv_layout(model) -> list[dict[str, Any]] | None:
    """The model's own cache after one lazily traced token: bytes per token, window limit, fixed state.

    Only graph building happens (MLX infers shapes eagerly and evaluates nothing), so the layout is the
    model's real one: grouped KV heads, MLA latents, sliding windows, state-space layers.
    """
    import mlx.core as mx
    from mlx_lm.models import cache as cache_module

    cache = cache_module.make_prompt_cache(model)
    model(mx.array([[0]]), cache=cache)

    def describe(c) -> list[dict[str, Any]]:
        inner = getattr(c, "caches", None)
        if inner is not None:  # CacheList: several caches for one layer
            return [d for sub in inner for d in describe(sub)]
        keys, values = getattr(c, "keys", None), getattr(c, "values", None)
        if isinstance(keys, mx.array) and keys.ndim >= 3 and keys.shape[-2] > 0:
            slots = keys.shape[-2]
            per_token = (keys.nbytes + (values.nbytes if isinstance(values, mx.array) else 0)) / slots
            return [{"per_token": per_token, "limit": getattr(c, "max_size", None), "fixed": 0}]
        state = getattr(c, "cache", None)
        if isinstance(state, list):  # ArraysCache (state-space, linear attention): constant size
            return [{"per_token": 0, "limit": None, "fixed": sum(a.nbytes for a in state if isinstance(a, mx.array))}]
        return [{"per_token": 0, "limit": None, "fixed": 0, "unknown": type(c).__name__}]

    return [d for c in cache for d in describe(c)]


def _conversion_sizes(model, config: dict[str, Any], conversions: list[list[int]]) -> dict[str, int]:
    """Bytes after `mlx_lm.convert -q --q-bits B --q-group-size G` for each [B, G]: mlx-lm's own quantize_model,
    run once per group size on a fresh copy of the model at the fewest bits asked.

    The copy is built the way load_model builds it (mlx-lm's class lookup, ModelArgs.from_dict) and given the
    loaded (lazy, sanitized) parameters, so sanitize does not run again. Other bit widths of the same group size
    follow exactly: a packed weight grows in proportion to its bits, while scales and biases (one pair per
    group) and the layers the model's predicate quantizes its own way do not change.
    """
    sizes: dict[str, int] = {}
    for group_size in sorted({g for _, g in conversions}):
        widths = sorted(b for b, g in conversions if g == group_size)
        copy = _quantized_copy(model, config, widths[0], group_size)
        base_bytes = _parameter_bytes(copy)
        packed = sum(m.weight.nbytes for _, m in _leaves(copy) if getattr(m, "bits", None) == widths[0])
        for bits in widths:
            sizes[f"{bits}bit"] = base_bytes + packed * (bits - widths[0]) // widths[0]
        _garbage.append(copy)
    return sizes


def _quantized_copy(model, config: dict[str, Any], bits: int, group_size: int):
    import mlx_lm.utils as utils
    from mlx.utils import tree_flatten

    get_classes = getattr(utils, "_get_classes", None) or utils.get_model_classes
    model_class, args_class = get_classes(config=config)
    copy = model_class(args_class.from_dict(config))
    copy.load_weights(tree_flatten(model.parameters()), strict=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its bits per weight
        utils.quantize_model(copy, config, group_size, bits)
    return copy


def _leaves(model) -> list:
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    return tree_flatten(model.leaf_modules(), is_leaf=lambda m: isinstance(m, nn.Module))


def dry_load(request: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from mlx_lm.utils import load_model, load_tokenizer

    path = Path(request["path"])
    started = time.perf_counter()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            model, config = load_model(path, lazy=True)
    except BaseException as e:  # noqa: BLE001 - whatever load() raises is the answer
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        return _failure("model", e, printed.getvalue())
    finally:
        sys.stderr.write(printed.getvalue())
    # As mlx_lm.load() calls it, in the versions whose load_tokenizer takes the config's eos ids.
    takes_eos = "eos_token_ids" in inspect.signature(load_tokenizer).parameters
    try:
        if takes_eos:
            tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id", None))
        else:
            tokenizer = load_tokenizer(path)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        return _failure("tokenizer", e)
    loaded = time.perf_counter()

    try:  # the verdict is in: a measurement that fails must not lose it
        sizes = {"model_bytes": _parameter_bytes(model), "params": _parameter_count(model),
                 "quantized": _is_quantized(model)}
    except Exception as e:  # noqa: BLE001
        sizes = {"model_bytes": None, "params": None, "quantized": True,
                 "notes": [f"model not measured: {type(e).__name__}: {str(e)[:200]}"]}
    result: dict[str, Any] = {
        "ok": True,
        "phase": "done",
        "load_seconds": round(loaded - started, 4),
        "module": type(model).__module__.rpartition("mlx_lm.models.")[2] or None,  # the module that built it
        **sizes,
        "expert_bytes": 0,
        "experts": None,
        "tokenizer": type(getattr(tokenizer, "_tokenizer", tokenizer)).__name__,
        "conversions": {},
        "kv_layout": None,
        "notes": sizes.get("notes", []),
    }
    try:
        result["expert_bytes"], result["experts"] = _experts(model)
    except Exception as e:  # noqa: BLE001 - a measurement, not the verdict
        result["notes"].append(f"expert weights not measured: {type(e).__name__}: {str(e)[:200]}")
    try:
        result["kv_layout"] = _kv_layout(model)
    except Exception as e:  # noqa: BLE001 - a measurement, not the verdict: say so and go on
        result["notes"].append(f"cache layout not traced: {type(e).__name__}: {str(e)[:200]}")
    _garbage.append(model)  # freed after the answer is sent: a 90k-tensor graph takes a second to free
    if not result["quantized"] and request.get("conversions"):
        try:
            result["conversions"] = _conversion_sizes(model, config, request["conversions"])
        except Exception as e:  # noqa: BLE001 - a measurement, not the verdict
            result["notes"].append(f"conversions not sized: {type(e).__name__}: {str(e)[:200]}")
    result["measure_seconds"] = round(time.perf_counter() - loaded, 4)
    result["max_rss_bytes"] = _max_rss_bytes()
    return result


def _max_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kilobytes


def _apply_remaps(pairs: list[str]) -> None:
    """--remap TYPE=MODULE: add to the installed MODEL_REMAPPING (tests prove version-driven answers with it)."""
    import mlx_lm.utils as utils

    for pair in pairs:
        source, _, target = pair.partition("=")
        utils.MODEL_REMAPPING[source] = target


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends us by closing stdin
    requests, answers = _private_streams()

    def answer(msg: dict[str, Any]) -> None:
        answers.write(json.dumps(msg) + "\n")
        answers.flush()

    import mlx_lm.utils as utils

    remaps = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--remap"]
    _apply_remaps(remaps)
    answer({
        "kind": "hello",
        "pid": os.getpid(),
        "mlx_lm_version": _package_version("mlx-lm"),
        "mlx_version": _package_version("mlx"),
        "allow_patterns": list(getattr(utils, "DEFAULT_ALLOW_PATTERNS", [])),
        "tokenizer_libraries": f"transformers {_package_version('transformers')}|tokenizers {_package_version('tokenizers')}",
        "environment": installed_fingerprint(),
        "remaps": remaps,
    })
    for line in requests:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue
        if request.get("ping"):  # answered once the previous dry load's graph is freed: the prober is idle
            answer({"kind": "result", "id": request.get("id"), "ok": True, "pong": True})
            continue
        gc.disable()  # a large model creates ~10^5 objects: no collections while it is built
        try:
            result = dry_load(request)
        finally:
            gc.enable()
        answer({"kind": "result", "id": request.get("id"), **result})
        _garbage.clear()
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
