"""The capability table of an installed mlx-lm: which `model_type` strings `mlx_lm.load()` accepts.

It mirrors `mlx_lm.utils._get_classes`: (model_type, architectures) through
MODEL_ARCHITECTURE_REMAPPING, else MODEL_REMAPPING, else the type itself, names a module of
`mlx_lm.models` that must define `Model` and `ModelArgs`. The table is built by probing the
installed package (bot.services.capability_probe); this module only holds and queries it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModuleInfo:
    """One module of mlx_lm.models, as the probe found it."""

    name: str
    is_architecture: bool  # defines Model and ModelArgs (helpers like `cache` or `ssm` do not)
    import_error: str | None = None  # why importing it failed, e.g. it exits without an extra package
    missing_package: str | None = None  # pip package that would make it importable, when known
    dequantizes_fp8: bool = False  # its sanitize() turns fp8 `weight_scale_inv` checkpoints into bf16
    required_args: tuple[str, ...] = ()  # ModelArgs fields with no default: config.json must have them

    @property
    def loads(self) -> bool:
        return self.is_architecture and self.import_error is None


@dataclass(frozen=True)
class Dispatch:
    """Where a config's model_type goes: the module, and the remap that sent it there (if any)."""

    model_type: str
    module: str
    remapped_by: str | None = None  # "MODEL_REMAPPING" or "MODEL_ARCHITECTURE_REMAPPING"
    info: ModuleInfo | None = None  # None: no such module in the installed mlx-lm


@dataclass(frozen=True)
class CapabilityTable:
    mlx_lm_version: str
    modules: dict[str, ModuleInfo]
    model_remapping: dict[str, str] = field(default_factory=dict)
    architecture_remapping: dict[tuple[str, str], str] = field(default_factory=dict)

    def dispatch(self, model_type: str, architectures: Any = ()) -> Dispatch:
        """Resolve like mlx_lm.utils._get_classes does."""
        if isinstance(architectures, str):
            architectures = (architectures,)
        for arch in architectures or ():
            target = self.architecture_remapping.get((model_type, arch))
            if target is not None:
                return Dispatch(model_type, target, "MODEL_ARCHITECTURE_REMAPPING", self.modules.get(target))
        target = self.model_remapping.get(model_type, model_type)
        remapped = "MODEL_REMAPPING" if target != model_type else None
        return Dispatch(model_type, target, remapped, self.modules.get(target))

    def accepted_types(self) -> dict[str, str]:
        """Every model_type string that dispatches to a loadable module -> that module."""
        out = {name: name for name, info in self.modules.items() if info.loads}
        for src, dst in self.model_remapping.items():
            if dst in self.modules and self.modules[dst].loads:
                out[src] = dst
        return dict(sorted(out.items()))

    def rows(self) -> list[dict[str, Any]]:
        """One row per model_type (accepted or not), for `canrun check --list-architectures`."""
        rows = []
        names = set(self.modules) | set(self.model_remapping)
        for model_type in sorted(names):
            d = self.dispatch(model_type)
            if d.info is not None and not d.info.is_architecture:
                continue  # helper modules are not model types
            rows.append(
                {
                    "model_type": model_type,
                    "module": d.module if d.info is not None else None,  # a remap to a module that is not here
                    "remapped_by": d.remapped_by,
                    "loads": bool(d.info and d.info.loads),
                    "needs": _needs(d),
                }
            )
        for (model_type, arch), module in sorted(self.architecture_remapping.items()):
            info = self.modules.get(module)
            rows.append(
                {
                    "model_type": f"{model_type} + {arch}",
                    "module": module,
                    "remapped_by": "MODEL_ARCHITECTURE_REMAPPING",
                    "loads": bool(info and info.loads),
                    "needs": None,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "mlx_lm_version": self.mlx_lm_version,
            "modules": {k: asdict(v) for k, v in self.modules.items()},
            "model_remapping": self.model_remapping,
            "architecture_remapping": [[t, a, m] for (t, a), m in self.architecture_remapping.items()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapabilityTable:
        modules = {}
        for k, v in data["modules"].items():
            v = dict(v)
            v["required_args"] = tuple(v.get("required_args", ()))
            modules[k] = ModuleInfo(**v)
        return cls(
            mlx_lm_version=data["mlx_lm_version"],
            modules=modules,
            model_remapping=dict(data.get("model_remapping", {})),
            architecture_remapping={(t, a): m for t, a, m in data.get("architecture_remapping", [])},
        )


def _needs(d: Dispatch) -> str | None:
    """Why a model type does not load here, for the architecture listing."""
    if d.info is None:
        return f"mlx_lm.models.{d.module} does not exist in this mlx-lm"
    if not d.info.loads:
        return d.info.missing_package or d.info.import_error
    return None
