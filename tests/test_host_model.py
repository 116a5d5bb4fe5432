"""The host model on each kind: MLX's device_info() answers given as data (Metal, CUDA), and the real CPU path of
this machine for real, through `canrun host` too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bot.core.host_model import APPLE_GPU, CPU, CUDA_GPU, METAL_SOURCE, describe_host
from bot.services.host import gpu_memory, host_memory, machine_name, physical_memory_bytes, this_host

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAM = 64 * 10**9
METAL_INFO = {"architecture": "applegpu_g15s", "device_name": "Apple M3 Max", "memory_size": 68719476736,
              "max_buffer_length": 51539607552, "max_recommended_working_set_size": 51539607552,
              "resource_limit": 499000}
CUDA_INFO = {"device_name": "NVIDIA H200", "architecture": "sm_90", "total_memory": 150_110_011_392,
             "free_memory": 149_000_000_000}


def test_a_mac_measures_against_metals_working_set_and_is_this_mac():
    host = describe_host("Darwin", METAL_INFO, RAM)
    assert (host.kind, host.device, host.name) == (APPLE_GPU, "Apple M3 Max", "this Mac")
    assert (host.memory.budget_bytes, host.memory.source) == (51539607552, METAL_SOURCE)
    assert host.kind_label == "Apple GPU (Metal)"


def test_a_cuda_host_measures_against_the_cards_memory_and_names_the_gpu():
    host = describe_host("Linux", CUDA_INFO, RAM)
    assert (host.kind, host.device, host.name) == (CUDA_GPU, "NVIDIA H200", "this machine's GPU (NVIDIA H200)")
    assert (host.memory.budget_bytes, host.memory.source) == (150_110_011_392, "NVIDIA H200 memory")
    assert host.to_json() == {"kind": "cuda_gpu", "kind_label": "CUDA GPU", "device": "NVIDIA H200",
                              "name": "this machine's GPU (NVIDIA H200)", "memory_bytes": 150_110_011_392,
                              "memory_source": "NVIDIA H200 memory"}


def test_a_cpu_host_measures_against_ram_and_is_this_machine():
    host = describe_host("Linux", None, RAM, cpu_name="AMD EPYC")
    assert (host.kind, host.device, host.name, host.memory.budget_bytes) == (CPU, "AMD EPYC", "this machine", RAM)
    assert describe_host("Darwin", None, RAM).name == "this Mac"  # MLX forced onto a Mac's CPU


def test_the_device_label_names_the_device_and_what_mlx_computes_with():
    assert describe_host("Darwin", METAL_INFO, RAM).device_label == "Apple M3 Max (Metal)"
    assert describe_host("Linux", CUDA_INFO, RAM).device_label == "NVIDIA H200 (CUDA)"
    assert describe_host("Linux", None, RAM, cpu_name="AMD EPYC").device_label == "AMD EPYC (CPU)"


def test_the_configured_budget_wins_on_every_kind():
    for info in (METAL_INFO, CUDA_INFO, None):
        memory = describe_host("Linux", info, RAM, budget_gb=12.5).memory
        assert (memory.budget_bytes, memory.source) == (12_500_000_000, "configured budget")


def test_a_long_gpu_name_keeps_slash_command_descriptions_within_discords_100_characters():
    host = describe_host("Linux", {**CUDA_INFO, "device_name": "NVIDIA GeForce RTX 5090 Laptop GPU Max-Q"}, RAM)
    assert host.device == "NVIDIA GeForce RTX 5090 Laptop GPU Max-Q"  # the device keeps its full name
    assert len(f"(moderators) Really load a model with mlx-lm on {host.name}") <= 100
    assert host.name.endswith("…)")


def test_this_cpu_host_for_real_and_the_old_helpers_agree_with_it():
    host = this_host()
    assert host.kind == CPU and host.name == machine_name() == "this machine"  # mlx[cpu] on Linux
    assert host.memory == host_memory() and host.memory.budget_bytes == physical_memory_bytes() > 0
    assert gpu_memory() is None and this_host(3.0).memory.budget_bytes == 3 * 10**9


def test_canrun_host_prints_it_with_the_configs_budget(tmp_path):
    (tmp_path / "config.toml").write_text("[memory]\nbudget_gb = 8\n")
    done = subprocess.run([sys.executable, "-m", "bot", "host", "--json", "--config", str(tmp_path / "config.toml")],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["kind"] == CPU and data["memory_bytes"] == 8 * 10**9 and data["memory_source"] == "configured budget"
    text = subprocess.run([sys.executable, "-m", "bot", "host"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert text.returncode == 0 and "kind:    CPU" in text.stdout and "host:    this machine" in text.stdout
    assert "8.0 GB (configured budget)" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "bot", "host", "--gpu"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
