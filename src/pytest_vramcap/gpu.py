"""What GPU this run is on, through NVML (nvidia-ml-py, imported as ``pynvml``).

Imported lazily: on machines without the ``gpu`` extra or an NVIDIA driver the
answer is ``None`` with a reason, never an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GpuInfo", "detect_gpus"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    total_mib: int
    driver: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_gpus() -> tuple[list[GpuInfo], str]:
    """The NVIDIA GPUs NVML sees, and a one-line reason when there are none."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed (pip install 'pytest-vramcap[gpu]')"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA driver ({exc})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(index, str(pynvml.nvmlDeviceGetName(handle)), str(pynvml.nvmlDeviceGetUUID(handle)),
                                int(memory.total) // (1024 * 1024), str(driver)))
        return gpus, "" if gpus else "NVML lists no GPU"
    finally:
        pynvml.nvmlShutdown()
