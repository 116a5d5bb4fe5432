"""What canrun knows about a repo before deciding: metadata only, never weights.

The hub service fills a `RepoMetadata`; the verdict engine reads it. Both ends are plain data so
the cache can store it as JSON and tests can build it by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from typing import Any

# mlx_lm.utils.load_model globs exactly this at the repo root.
MLX_WEIGHT_PATTERN = "model*.safetensors"


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int | None = None


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class RepoMetadata:
    repo_id: str
    revision: str | None = None  # what was asked for (None = default branch)
    sha: str | None = None  # the commit that was read
    files: list[RepoFile] = field(default_factory=list)
    config: dict[str, Any] | None = None
    config_error: str | None = None  # why config.json could not be parsed, when it exists
    tokenizer_config: dict[str, Any] | None = None
    hf_quant_config: dict[str, Any] | None = None
    # Tensor names/dtypes/shapes from the safetensors headers of the weight files (ranged reads).
    # None when they were not read (not needed for the verdict, or not a standard layout).
    tensors: dict[str, Tensor] | None = None
    hub_parameters: dict[str, int] | None = None  # the hub's safetensors summary: dtype -> count
    tags: list[str] = field(default_factory=list)
    base_models: list[str] = field(default_factory=list)
    downloads: int = 0
    library_name: str | None = None
    pipeline_tag: str | None = None
    gated: bool = False
    fetched_at: float | None = None  # when the hub was read (an answer from the cache is older than the ask)

    # ---- derived views used by several gates -------------------------------------------------
    def has_file(self, path: str) -> bool:
        return any(f.path == path for f in self.files)

    def root_files(self, pattern: str) -> list[RepoFile]:
        return [f for f in self.files if "/" not in f.path and fnmatch(f.path, pattern)]

    @property
    def weight_files(self) -> list[RepoFile]:
        return self.root_files(MLX_WEIGHT_PATTERN)

    @property
    def weights_bytes(self) -> int | None:
        files = self.weight_files
        if not files or any(f.size is None for f in files):
            return None
        return sum(f.size for f in files)  # type: ignore[misc]

    # ---- JSON round trip for the cache ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.tensors is not None:
            data["tensors"] = {k: [t.dtype, list(t.shape)] for k, t in self.tensors.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepoMetadata:
        data = dict(data)
        data["files"] = [RepoFile(**f) for f in data.get("files", [])]
        if data.get("tensors") is not None:
            data["tensors"] = {k: Tensor(v[0], tuple(v[1])) for k, v in data["tensors"].items()}
        return cls(**data)
