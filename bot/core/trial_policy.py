"""Whether a trial may run on this machine: pure checks of a Verdict against the owner's limits."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.verdicts import LOADS, Verdict
from bot.core.units import human_bytes

GB = 10**9


@dataclass(frozen=True)
class TrialLimitsPolicy:
    max_download_bytes: int
    max_memory_bytes: int  # the configured fraction of the memory budget
    min_free_disk_bytes: int
    machine: str = "this machine"  # how messages name the host ("this Mac" there)


def refusal(v: Verdict, limits: TrialLimitsPolicy, *, disk_available_bytes: int) -> str | None:
    """Why this trial must not run, or None. `disk_available_bytes`: free space plus what the model cache can evict."""
    if v.verdict != LOADS:
        return f"canrun's verdict is `{v.verdict}`: {v.reasons[0] if v.reasons else 'it would not load'}"
    if v.weights_bytes is None:
        return "the size of the weights is unknown"
    if v.weights_bytes > limits.max_download_bytes:
        return (f"the weights are {human_bytes(v.weights_bytes)}, over {limits.machine}'s trial download limit of "
                f"{human_bytes(limits.max_download_bytes)}")
    need = v.memory.get("as_is")
    if need is not None and need.need_bytes > limits.max_memory_bytes:
        return (f"it needs about {human_bytes(need.need_bytes)} of memory, over the {human_bytes(limits.max_memory_bytes)} "
                "trials may use")
    if disk_available_bytes - v.weights_bytes < limits.min_free_disk_bytes:
        return (f"the download ({human_bytes(v.weights_bytes)}) would leave less than "
                f"{human_bytes(limits.min_free_disk_bytes)} free on disk: {human_bytes(max(0, disk_available_bytes))} "
                "is free, counting what the model cache could make free")
    return None


def loaded_from(status: str, phase: str | None, reached_generate: bool, reported: bool) -> bool | None:
    """Did mlx_lm.load() succeed? The ground truth for predictions, when the trial can tell.

    Only an error that load() itself raised (reported by the worker) says no: a worker killed while loading
    (out of memory because something else ran, a signal) says nothing about the model."""
    if status == "succeeded" or reached_generate:
        return True
    if status == "failed" and phase == "load" and reported:
        return False
    return None  # cancelled, timed out, failed while downloading or killed: load() was never judged
