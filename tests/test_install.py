"""The install path: MLX's CPU or CUDA build on Linux as extras that exclude each other, chosen by `make MLX=...`,
and `make run` with no token, no keychain and no service manager still ending cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # the environment running the tests: never reinstalled here


def make(*args: str, cwd: Path = PROJECT_ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_the_mlx_builds_are_extras_and_the_base_names_none():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("mlx[") for d in project["dependencies"])  # else cpu and cuda would both install
    assert project["optional-dependencies"]["cpu"] == ["mlx[cpu]>=0.32; sys_platform == 'linux'"]
    assert project["optional-dependencies"]["cuda"] == ["mlx[cuda13]>=0.32; sys_platform == 'linux'"]
    assert any(d.startswith("keyring") for d in project["dependencies"])


def test_make_installs_the_chosen_build_and_removes_the_other(tmp_path):
    venv = str(tmp_path / "venv")  # no stamp there: make says what it would run (-n), runs nothing
    cuda = make("-n", "install", "MLX=cuda", f"VENV={venv}")
    assert cuda.returncode == 0, cuda.stderr
    assert "pip uninstall --quiet --yes mlx-cpu" in cuda.stdout and "-e '.[test,cuda]'" in cuda.stdout
    cpu = make("-n", "install", f"VENV={venv}")
    assert "pip uninstall --quiet --yes mlx-cuda-13 mlx-cuda-12" in cpu.stdout and "-e '.[test,cpu]'" in cpu.stdout
    bad = make("-n", "install", "MLX=rocm", f"VENV={venv}")
    assert bad.returncode == 2 and "expected MLX=cpu (the default) or MLX=cuda" in bad.stderr


def test_make_run_without_a_token_keychain_or_service_manager_ends_cleanly(tmp_path):
    for name in ("Makefile", "config.example.toml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    stamp = VENV / ".canrun-installed-cpu"
    done = make("run", f"VENV={VENV}", "-o", str(stamp), "-o", "pyproject.toml", cwd=tmp_path,
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", PATH=f"{VENV / 'bin'}:/usr/bin:/bin")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DISCORD_TOKEN is not set" in done.stderr and "canrun secrets set DISCORD_TOKEN" in done.stderr
    assert (tmp_path / "config.toml").exists()
