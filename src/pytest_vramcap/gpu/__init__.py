"""Stage 5, the GPU: what NVML sees, and a ballast that makes a big card look like the profile's.

    nvml.py     GPU inventory and a per-process memory sampler (nvidia-ml-py, imported lazily)
    ballast.py  a libcuda allocation holding the difference between the card and the profile

Both work on machines without a driver: the inventory is empty with a reason.
"""

from __future__ import annotations

from .ballast import Ballast
from .nvml import GpuInfo, MemorySample, MemorySampler, detect_gpus, visible_gpu

__all__ = ["Ballast", "GpuInfo", "MemorySample", "MemorySampler", "detect_gpus", "visible_gpu"]
