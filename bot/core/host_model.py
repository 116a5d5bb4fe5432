"""The host canrun answers for, in one place: what MLX computes on (an Apple GPU through Metal, an NVIDIA GPU
through CUDA, or the CPU), the device's name, the memory budget a model's fit is measured against, and how
messages name the machine.

Pure: the facts (the OS, MLX's `device_info()` of its default device, the RAM) come in as data; gathering them
is bot/services/host.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.engine import HostMemory
from bot.core.trial_policy import GB  # decimal, as every `*_gb` of the config and every size canrun prints

APPLE_GPU, CUDA_GPU, CPU = "apple_gpu", "cuda_gpu", "cpu"
KIND_LABELS = {APPLE_GPU: "Apple GPU (Metal)", CUDA_GPU: "CUDA GPU", CPU: "CPU"}
BACKENDS = {APPLE_GPU: "Metal", CUDA_GPU: "CUDA", CPU: "CPU"}  # what MLX computes with, in device labels
METAL_SOURCE = "GPU recommended working set"  # the budget Metal sets, which iogpu.wired_limit_mb raises
DEVICE_IN_NAME_MAX = 28  # "... on this machine's GPU (<device>)" must stay within a slash command's 100 characters


@dataclass(frozen=True)
class Host:
    kind: str  # APPLE_GPU, CUDA_GPU or CPU
    device: str  # "Apple M3 Max", "NVIDIA H200", "AMD EPYC"
    memory: HostMemory  # the budget a model's fit is measured against, and where it comes from
    name: str  # how messages name it: "this Mac", "this machine's GPU (NVIDIA H200)", "this machine"

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def device_label(self) -> str:
        """The device and MLX's backend, "Apple M3 Max (Metal)": a trial's result records it and speed estimates
        look their calibration up by it, so the worker and the bot both take it from here."""
        return f"{self.device} ({BACKENDS[self.kind]})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "kind_label": self.kind_label, "device": self.device, "name": self.name,
                "memory_bytes": self.memory.budget_bytes, "memory_source": self.memory.source}


def describe_host(system: str, gpu_info: dict[str, Any] | None, ram_bytes: int, budget_gb: float = 0.0,
                  cpu_name: str = "") -> Host:
    """`system` as platform.system() says it; `gpu_info` MLX's device_info() when its default device is a GPU,
    None when MLX computes on the CPU (or is missing); `budget_gb` > 0 ([memory] budget_gb) wins over the rest."""
    info = gpu_info or {}
    if info.get("max_recommended_working_set_size"):  # Metal: what macOS lets the GPU wire, below total RAM
        kind = APPLE_GPU
        device = str(info.get("device_name") or cpu_name or "Apple GPU")
        memory = HostMemory(int(info["max_recommended_working_set_size"]), METAL_SOURCE)
    elif info.get("total_memory"):  # CUDA: the card's own memory bounds the model, not the host's RAM
        kind = CUDA_GPU
        device = str(info.get("device_name") or "GPU")
        memory = HostMemory(int(info["total_memory"]), f"{device} memory")
    else:
        kind = CPU
        device = str(info.get("device_name") or cpu_name or "CPU")
        memory = HostMemory(ram_bytes, "physical RAM")
    if budget_gb > 0:
        memory = HostMemory(int(budget_gb * GB), "configured budget")
    return Host(kind, device, memory, _human_name(system, kind, device))


def _human_name(system: str, kind: str, device: str) -> str:
    if system == "Darwin":
        return "this Mac"
    if kind == CUDA_GPU:
        short = device if len(device) <= DEVICE_IN_NAME_MAX else device[:DEVICE_IN_NAME_MAX - 1].rstrip() + "…"
        return f"this machine's GPU ({short})"
    return "this machine"
