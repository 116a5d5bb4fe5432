"""A model folder for the dry load: the repo's real small files, and weight shards that are headers only.

Each placeholder shard is a valid safetensors file: the repo's tensor names, dtypes and shapes in its
header, followed by a sparse hole of the right length. `mx.load` reads headers and maps nothing until an
array is evaluated, which the dry load never does, so a 700 GB checkpoint costs a few MB of disk and
memory. (The alternative, patching `mx.load` to return lazy zeros, would run a copy of the loader rather
than the installed one.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bot.core.metadata import Tensor

# Bytes per element of each safetensors dtype.
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}


class UnknownDtype(ValueError):
    """A header names a dtype this module cannot size (so no placeholder can be written)."""


def write_placeholder_shard(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> int:
    """Write a header-only safetensors file; returns the length it declares (the real shard's size).

    The header is assembled as text (a 90,000-tensor MoE has a 9 MB header: json.dumps of nested dicts would take
    a good part of the dry load's time budget)."""
    parts = ['{"__metadata__":' + json.dumps(dict(metadata or {"format": "pt"}), separators=(",", ":"))]
    offset = 0
    for name, t in tensors.items():
        size = DTYPE_BYTES.get(t.dtype)
        if size is None:
            raise UnknownDtype(f"tensor {name} has dtype {t.dtype}")
        end = offset + size * math.prod(t.shape)
        shape = ",".join(map(str, t.shape))
        parts.append(f'{_quote(name)}:{{"dtype":"{t.dtype}","shape":[{shape}],"data_offsets":[{offset},{end}]}}')
        offset = end
    raw = (",".join(parts) + "}").encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data start to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)  # a hole: no blocks are written
    return 8 + len(raw) + offset


_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, at C speed


FOLDER_PREFIX = "dry-"
STALE_AFTER_SECONDS = 3600


def new_folder(root: Path) -> Path:
    """A fresh, empty folder for one dry load (absolute: mlx-lm is given it as a path)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=root)).resolve()


def stage_model_folder(
    folder: Path, small_files: Mapping[str, Path], shards: Mapping[str, Mapping[str, Tensor]]
) -> Path:
    """Fill `folder` (from new_folder) with copies of `small_files` and a placeholder per weight shard."""
    try:
        for name, source in small_files.items():
            if name.endswith(".py") or "/" in name or name.startswith("."):
                continue  # never a repo's code, never outside the folder
            shutil.copyfile(source, folder / name)
        for name, tensors in shards.items():
            write_placeholder_shard(folder / name, tensors)
    except BaseException:
        remove_folder(folder)
        raise
    return folder


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale_folders(root: Path, older_than: float = STALE_AFTER_SECONDS) -> None:
    """Folders an earlier process left behind (it died mid-dry-load); recent ones may belong to a live process."""
    if not root.is_dir():
        return
    cutoff = time.time() - older_than
    for folder in root.glob(FOLDER_PREFIX + "*"):
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                remove_folder(folder)
        except OSError:
            continue


def disk_blocks(path: Path) -> int:
    """Bytes really allocated on disk (a placeholder's hole allocates none)."""
    return os.stat(path).st_blocks * 512
