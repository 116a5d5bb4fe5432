"""Build the CapabilityTable of the installed mlx-lm by importing its model modules in a child process.

Why a child: some modules end the process on import (olmo calls sys.exit without `ai2-olmo`), and
importing ~140 modules costs memory the bot should not keep. The child prints one JSON object per
line; if it dies anyway, the parent records the module it was importing and starts a new child
after it.

Run as `python -m bot.services.capability_probe [SKIP ...]` it is the child.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from importlib.metadata import PackageNotFoundError, version

from bot.core.capabilities import CapabilityTable, ModuleInfo

log = logging.getLogger(__name__)

_PIP_HINT = re.compile(r"pip install ([A-Za-z0-9][A-Za-z0-9._\-\[\]]*)")
MAX_CHILD_RESTARTS = 20


def installed_mlx_lm_version() -> str:
    return _installed("mlx-lm")


def installed_mlx_version() -> str:
    return _installed("mlx")


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _defines_a_model(name: str) -> bool:
    """Whether mlx_lm.models.<name>'s source defines Model and ModelArgs, read without importing it.

    A module that fails to import is an architecture only if it is one: helper modules (bitlinear_layers,
    switch_layers, ...) that fail for want of a package must not be listed as model types.
    """
    import importlib.util
    from pathlib import Path

    try:  # find_spec of the top-level package imports nothing (a submodule's would import mlx_lm)
        spec = importlib.util.find_spec("mlx_lm")
        folder = Path(list(spec.submodule_search_locations or [])[0]) if spec else None
        source = (folder / "models" / f"{name}.py").read_text(encoding="utf-8") if folder else ""
    except (ImportError, OSError, ValueError, IndexError):
        return False
    return bool(re.search(r"^class Model\b", source, re.M) and re.search(r"^(class ModelArgs\b|ModelArgs\s*=)", source, re.M))


# --------------------------------------------------------------------------------------------
# parent side


async def probe_capabilities(python: str = sys.executable, timeout: float = 300.0) -> CapabilityTable:
    """Import every mlx_lm.models module in child processes and return the table."""
    modules: dict[str, ModuleInfo] = {}
    remaps: dict | None = None
    done: set[str] = set()
    for _ in range(MAX_CHILD_RESTARTS):
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "bot.services.capability_probe", *sorted(done),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        current: str | None = None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("probing mlx-lm's model modules timed out") from None
        finished = False
        for line in out.decode("utf-8", "replace").splitlines():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue  # a module printed something despite the redirect
            kind = msg.pop("kind", None)
            if kind == "remaps":
                remaps = msg
            elif kind == "probing":
                current = msg["name"]
            elif kind == "module":
                modules[msg["name"]] = ModuleInfo(**{**msg, "required_args": tuple(msg["required_args"])})
                done.add(msg["name"])
                current = None
            elif kind == "finished":
                finished = True
        if remaps is None:
            raise RuntimeError(f"could not import mlx_lm: {err.decode('utf-8', 'replace')[-500:]}")
        if finished:
            break
        if current is None:
            raise RuntimeError(f"the mlx-lm probe died: {err.decode('utf-8', 'replace')[-500:]}")
        # The child died importing `current`: that module is not loadable here; carry on after it.
        tail = err.decode("utf-8", "replace").strip()[-300:] or f"exit code {proc.returncode}"
        hint = _PIP_HINT.search(out.decode("utf-8", "replace") + tail)
        log.warning("mlx_lm.models.%s ended the probe process: %s", current, tail)
        modules[current] = ModuleInfo(
            current, is_architecture=_defines_a_model(current), import_error=f"importing it ends the process ({tail})",
            missing_package=hint.group(1) if hint else None,
        )
        done.add(current)
    else:
        raise RuntimeError("the mlx-lm probe kept dying")

    return CapabilityTable(
        mlx_lm_version=remaps["version"],
        modules=modules,
        model_remapping=remaps["model_remapping"],
        architecture_remapping={(t, a): m for t, a, m in remaps["architecture_remapping"]},
    )


# --------------------------------------------------------------------------------------------
# child side


def _emit(**msg) -> None:
    sys.__stdout__.write(json.dumps(msg) + "\n")
    sys.__stdout__.flush()


def _probe_module(name: str) -> dict:
    import contextlib
    import dataclasses
    import importlib
    import inspect
    import io

    captured = io.StringIO()
    info = {"name": name, "is_architecture": False, "import_error": None, "missing_package": None,
            "dequantizes_fp8": False, "required_args": []}
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            module = importlib.import_module(f"mlx_lm.models.{name}")
    except SystemExit as e:
        text = captured.getvalue().strip()
        hint = _PIP_HINT.search(text)
        info.update(is_architecture=_defines_a_model(name), import_error=text or f"exits on import (code {e.code})",
                    missing_package=hint.group(1) if hint else None)
        return info
    except ModuleNotFoundError as e:
        info.update(is_architecture=_defines_a_model(name), import_error=f"needs the package `{e.name}`",
                    missing_package=e.name)
        return info
    except Exception as e:  # noqa: BLE001 - any import failure means the loader would fail too
        info.update(is_architecture=_defines_a_model(name), import_error=f"{type(e).__name__}: {e}"[:300])
        return info

    model, args = getattr(module, "Model", None), getattr(module, "ModelArgs", None)
    if model is None or args is None:
        return info
    info["is_architecture"] = True
    try:
        source = inspect.getsource(inspect.getmodule(model))
        info["dequantizes_fp8"] = "weight_scale_inv" in source
    except (OSError, TypeError):
        pass
    # from_dict keeps only keys ModelArgs takes; fields without defaults must come from config.json.
    if dataclasses.is_dataclass(args) and "from_dict" not in vars(args):
        info["required_args"] = [
            f.name for f in dataclasses.fields(args)
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
    return info


def _child_main(skip: set[str]) -> None:
    import pkgutil

    import mlx_lm.models
    import mlx_lm.utils as utils

    _emit(
        kind="remaps",
        version=installed_mlx_lm_version(),
        model_remapping=dict(getattr(utils, "MODEL_REMAPPING", {})),
        architecture_remapping=[[t, a, m] for (t, a), m in getattr(utils, "MODEL_ARCHITECTURE_REMAPPING", {}).items()],
    )
    for mod in sorted(pkgutil.iter_modules(mlx_lm.models.__path__), key=lambda m: m.name):
        if mod.name in skip or mod.name.startswith("_"):
            continue
        _emit(kind="probing", name=mod.name)
        _emit(kind="module", **_probe_module(mod.name))
    _emit(kind="finished")


if __name__ == "__main__":
    _child_main(set(sys.argv[1:]))
