"""The verdict vocabulary (a contract: the study group's scripts read these strings) and the Verdict record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.core.speed import SpeedReport

LOADS = "loads"
UNSUPPORTED_ARCHITECTURE = "unsupported_architecture"
UNSUPPORTED_WEIGHTS = "unsupported_weights"
UNSUPPORTED_QUANTIZATION = "unsupported_quantization"
REMOTE_CODE = "remote_code"
NO_CONFIG = "no_config"
GATED = "gated"
NOT_FOUND = "not_found"

ALL_VERDICTS = (
    LOADS, UNSUPPORTED_ARCHITECTURE, UNSUPPORTED_WEIGHTS, UNSUPPORTED_QUANTIZATION,
    REMOTE_CODE, NO_CONFIG, GATED, NOT_FOUND,
)

HEADLINES = {
    LOADS: "Loads in mlx-lm",
    UNSUPPORTED_ARCHITECTURE: "Architecture not supported by this mlx-lm",
    UNSUPPORTED_WEIGHTS: "No weights mlx-lm can read",
    UNSUPPORTED_QUANTIZATION: "Quantization format not supported",
    REMOTE_CODE: "Needs the repo's own Python code",
    NO_CONFIG: "Missing files load() needs",
    GATED: "Gated: accept the license first",
    NOT_FOUND: "Not found on Hugging Face",
}


@dataclass(frozen=True)
class GateFailure:
    """One gate of mlx_lm.load() that this repo would not pass."""

    verdict: str
    reason: str


@dataclass(frozen=True)
class MemoryFit:
    need_bytes: int
    budget_bytes: int
    status: str  # "fits" | "tight" | "too_large"

    def to_json(self) -> dict[str, Any]:
        return {"need_bytes": self.need_bytes, "budget_bytes": self.budget_bytes, "status": self.status}


@dataclass
class Suggestion:
    kind: str  # "conversion" | "pull_request" | "issue" | "upgrade" | "convert_command" | "base_model"
    title: str
    url: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "url": self.url, "detail": self.detail}


@dataclass
class Verdict:
    repo: str
    verdict: str
    revision: str | None = None
    sha: str | None = None
    model_type: str | None = None
    module: str | None = None
    remapped_by: str | None = None
    quantization: str | None = None  # human label: "bf16", "4-bit MLX (affine)", "AWQ 4-bit", ...
    reasons: list[str] = field(default_factory=list)
    weights_bytes: int | None = None
    params: int | None = None
    memory: dict[str, MemoryFit] = field(default_factory=dict)  # "as_is", "8bit", "4bit"
    mlx_lm_version: str | None = None
    mlx_version: str | None = None
    # "dry_load": the installed mlx-lm's own load on the metadata decided; "static": canrun's gates alone
    # (a repo that never reaches a load, the dry load switched off or unable to answer).
    checked_by: str = "static"
    metadata_fetched_at: float | None = None  # unix time the hub was read; older than the ask when cached
    suggestions: list[Suggestion] = field(default_factory=list)
    suggestions_unavailable: list[str] = field(default_factory=list)  # sources that did not answer in time
    speed: SpeedReport | None = None  # tokens/s on this host, for a verdict that loads
    fixes: list[dict[str, Any]] = field(default_factory=list)  # what makes a tight or too-large model fit

    @property
    def headline(self) -> str:
        return HEADLINES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        """The `canrun check --json` object (contract: keep these keys)."""
        return {
            "repo": self.repo,
            "revision": self.revision,
            "sha": self.sha,
            "verdict": self.verdict,
            "model_type": self.model_type,
            "module": self.module,
            "remapped_by": self.remapped_by,
            "quantization": self.quantization,
            "reasons": list(self.reasons),
            "weights_bytes": self.weights_bytes,
            "params": self.params,
            "memory": {k: v.to_json() for k, v in self.memory.items()},
            "mlx_lm_version": self.mlx_lm_version,
            "mlx_version": self.mlx_version,
            "checked_by": self.checked_by,
            "metadata_fetched_at": self.metadata_fetched_at,
            "suggestions": [s.to_json() for s in self.suggestions],
            "suggestions_unavailable": list(self.suggestions_unavailable),
            "speed": self.speed.to_json() if self.speed else None,
            "fixes": [dict(f) for f in self.fixes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            repo=data["repo"], verdict=data["verdict"], revision=data.get("revision"), sha=data.get("sha"),
            model_type=data.get("model_type"), module=data.get("module"), remapped_by=data.get("remapped_by"),
            quantization=data.get("quantization"), reasons=list(data.get("reasons", [])),
            weights_bytes=data.get("weights_bytes"), params=data.get("params"),
            memory={k: MemoryFit(**v) for k, v in (data.get("memory") or {}).items()},
            mlx_lm_version=data.get("mlx_lm_version"), mlx_version=data.get("mlx_version"),
            checked_by=data.get("checked_by", "static"), metadata_fetched_at=data.get("metadata_fetched_at"),
            suggestions=[Suggestion(**s) for s in data.get("suggestions", [])],
            suggestions_unavailable=list(data.get("suggestions_unavailable", [])),
            speed=SpeedReport.from_json(data["speed"]) if data.get("speed") else None,
            fixes=[dict(f) for f in data.get("fixes") or []],
        )
