"""Is there room on the GPU for the plan before a server starts? (issue 30's preflight)

A desktop session or a model Ollama keeps loaded for five minutes holds memory the plan counts as free: the run
would end in an OOM or offload verdict that blames the plan. NVML says what is free and which processes hold the
rest; the names come from /proc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..defaults import MIB
from .nvml import GpuInfo, nvml_session

__all__ = ["GpuRoom", "Holder", "read_room", "shortfall"]


@dataclass(frozen=True)
class Holder:
    pid: int
    name: str
    mib: float


@dataclass(frozen=True)
class GpuRoom:
    gpu: str
    free_mib: float
    holders: tuple[Holder, ...]


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "a process of another container or user"


def read_room(gpu: GpuInfo) -> GpuRoom | None:
    """``gpu``'s free memory and the processes holding memory on it; None when NVML cannot be asked."""
    with nvml_session("") as (pynvml, _why):
        if pynvml is None:
            return None
        handle = pynvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
        free = pynvml.nvmlDeviceGetMemoryInfo(handle).free / MIB
        holders = []
        for listing in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            for process in listing(handle):
                used = process.usedGpuMemory
                holders.append(Holder(process.pid, _process_name(process.pid), used / MIB if used else 0.0))
        return GpuRoom(gpu.name, free, tuple(holders))


def shortfall(room: GpuRoom, needed_mib: float) -> str | None:
    """One line when ``room`` has less free than ``needed_mib`` (naming who holds the rest), else None."""
    if room.free_mib >= needed_mib:
        return None
    held = "; ".join(f"{holder.name} (pid {holder.pid}) holds {holder.mib:,.0f} MiB"
                     for holder in sorted(room.holders, key=lambda holder: -holder.mib))
    return (f"the GPU ({room.gpu}) has {room.free_mib:,.0f} MiB free, the plan needs {needed_mib:,.0f} MiB at peak"
            f"{': ' + held if held else ''}; stop it or plan for what is free")
