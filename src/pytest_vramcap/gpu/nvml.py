"""NVIDIA GPUs through NVML (nvidia-ml-py, imported as ``pynvml``): inventory and a sampler.

Imported lazily: on machines without the ``gpu`` extra or an NVIDIA driver the
inventory is empty with a reason, never an error. Devices are resolved by UUID,
because NVML numbers devices physically and ignores CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from ..defaults import MIB

__all__ = ["GpuInfo", "GpuMemory", "MemorySample", "MemorySampler", "detect_gpus", "memory_in_use", "nvml_session",
           "visible_gpu",
           "visible_gpus"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    total_mib: int
    driver: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def nvml_session(missing: str) -> Iterator[tuple[Any, str]]:
    """``pynvml`` initialised for the block and shut down after it; (None, why) when it cannot be."""
    try:
        import pynvml
    except ImportError:
        yield None, f"nvidia-ml-py is not installed{missing}"
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        yield None, f"no NVIDIA driver ({exc})"
        return
    try:
        yield pynvml, ""
    finally:
        pynvml.nvmlShutdown()


def _devices(pynvml: Any) -> Iterator[tuple[int, Any, Any]]:
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        yield index, handle, pynvml.nvmlDeviceGetMemoryInfo(handle)


def detect_gpus() -> tuple[list[GpuInfo], str]:
    """The NVIDIA GPUs NVML sees, and a one-line reason when there are none."""
    with nvml_session(" (pip install 'pytest-vramcap[gpu]')") as (pynvml, why):
        if pynvml is None:
            return [], why
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = [GpuInfo(index, str(pynvml.nvmlDeviceGetName(handle)), str(pynvml.nvmlDeviceGetUUID(handle)),
                        int(memory.total) // MIB, str(driver)) for index, handle, memory in _devices(pynvml)]
        return gpus, "" if gpus else "NVML lists no GPU"


@dataclass(frozen=True)
class GpuMemory:
    """Memory in use on one GPU now (NVML's numbering; ``index`` is what nvidia-smi shows)."""

    index: int
    name: str
    used_mib: float
    total_mib: float
    uuid: str = ""


def memory_in_use() -> tuple[list[GpuMemory], str]:
    """Memory in use now on each GPU CUDA can see (``CUDA_VISIBLE_DEVICES`` honoured, in its order), or none
    and why. One NVML session per call: the Locust VRAM tab asks every few seconds."""
    with nvml_session("") as (pynvml, why):
        if pynvml is None:
            return [], why
        uuids = {index: str(pynvml.nvmlDeviceGetUUID(handle)) for index, handle, _ in _devices(pynvml)}
        found = {uuids[index]: GpuMemory(index, str(pynvml.nvmlDeviceGetName(handle)), round(memory.used / MIB, 1),
                                         round(memory.total / MIB, 1), uuids[index])
                 for index, handle, memory in _devices(pynvml)}
    inventory = [GpuInfo(gpu.index, gpu.name, uuid, int(gpu.total_mib), "") for uuid, gpu in found.items()]
    visible = [found[gpu.uuid] for gpu in visible_gpus(inventory)]
    if visible:
        return visible, ""
    return [], "NVML lists no GPU" if not found else "CUDA_VISIBLE_DEVICES hides every GPU"


def visible_gpus(gpus: list[GpuInfo]) -> list[GpuInfo]:
    """The GPUs CUDA can use: those CUDA_VISIBLE_DEVICES names (index or UUID), in its order, else all in NVML's
    (PCI bus) order. CUDA counts unlike cards fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID: our servers get
    the cards by UUID, and a ballast checks its card's UUID (gpu/ballast.py)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(gpus)
    chosen = []
    for entry in (part.strip() for part in visible.split(",")):
        match = next((gpu for gpu in gpus if entry and (entry == str(gpu.index) or gpu.uuid.startswith(entry)
                                                        or gpu.uuid.removeprefix("GPU-") == entry)), None)
        if match is None:
            break  # CUDA stops at the first entry it cannot resolve
        chosen.append(match)
    return chosen


def visible_gpu(gpus: list[GpuInfo]) -> GpuInfo | None:
    """The GPU CUDA calls device 0: the first of CUDA_VISIBLE_DEVICES (index or UUID), else NVML's first."""
    visible = visible_gpus(gpus)
    return visible[0] if visible else None


@dataclass
class MemorySample:
    t: float
    device_used_mib: float
    """Used on the followed cards together."""
    process_mib: float | None
    """What the followed processes held together (None: NVML listed none of them)."""
    gpu_util_pct: float | None
    """The first card's."""
    by_pid: dict[int, float] = field(default_factory=dict)
    """Each followed process, over the cards."""
    by_card: tuple[float, ...] = ()
    """Used on each followed card, in the sampler's order."""
    process_by_card: tuple[float | None, ...] = ()
    """What the followed processes held on each card."""


@dataclass
class MemorySampler:
    """A daemon thread sampling the memory of the cards ``uuids`` (one, or each card a model is split over, in
    CUDA's order) and the share of the processes ``pids`` (one server per model) every ``interval_s``.

    Peaks between samples are missed; NVML's per-process figure can be missing
    (``usedGpuMemory`` None) and, in containers, keyed by host PIDs: treat it as
    best effort and gate on device memory when in doubt.
    """

    uuids: tuple[str, ...]
    pids: tuple[int, ...] = ()
    interval_s: float = 0.05
    samples: list[MemorySample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def uuid(self) -> str:
        """The first card's (CUDA's device 0 of the run)."""
        return self.uuids[0]

    def start(self) -> MemorySampler:
        import pynvml

        pynvml.nvmlInit()
        self._handles = [pynvml.nvmlDeviceGetHandleByUUID(uuid) for uuid in self.uuids]
        self._thread = threading.Thread(target=self._run, name="vramcap-nvml", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> MemorySample:
        import pynvml

        used: list[float] = []
        held: list[float | None] = []
        by_pid: dict[int, float] = {}
        for handle in self._handles:
            used.append(pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB)
            on_card = [(proc.pid, proc.usedGpuMemory / MIB)
                       for proc in (pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if self.pids else ())
                       if proc.pid in self.pids and proc.usedGpuMemory is not None]
            for pid, mib in on_card:
                by_pid[pid] = by_pid.get(pid, 0.0) + mib
            held.append(sum(mib for _pid, mib in on_card) if on_card else None)
        try:
            util = float(pynvml.nvmlDeviceGetUtilizationRates(self._handles[0]).gpu)
        except pynvml.NVMLError:
            util = None
        return MemorySample(time.monotonic(), sum(used), sum(by_pid.values()) if by_pid else None, util, by_pid,
                            tuple(used), tuple(held))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(self.interval_s)

    def stop(self) -> MemorySampler:
        import pynvml

        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self.samples.append(self._sample())
            pynvml.nvmlShutdown()
            self._thread = None
        return self

    @property
    def peak_device_mib(self) -> float | None:
        return max((s.device_used_mib for s in self.samples), default=None)

    @property
    def peak_process_mib(self) -> float | None:
        values = [s.process_mib for s in self.samples if s.process_mib is not None]
        return max(values, default=None)

    def peak_of(self, pid: int) -> float | None:
        """The most one followed process held (None: NVML never listed it)."""
        return max((s.by_pid[pid] for s in self.samples if pid in s.by_pid), default=None)

    def peaks_by_card(self) -> list[dict[str, Any]]:
        """Each followed card's peak: used on the card, and held there by the followed processes (None when NVML
        never listed them)."""
        cards = []
        for index, uuid in enumerate(self.uuids):
            used = [s.by_card[index] for s in self.samples if len(s.by_card) > index]
            held = [value for s in self.samples if len(s.process_by_card) > index
                    and (value := s.process_by_card[index]) is not None]
            cards.append({"uuid": uuid, "peak_device_mib": max(used, default=None),
                          "peak_process_mib": max(held, default=None)})
        return cards

    def peak_between(self, start: float, end: float, device_offset_mib: float = 0.0) -> float | None:
        """The most memory the process held between two ``time.monotonic()`` readings; when NVML never listed it
        (containers without the host's PID namespace), the device's, less ``device_offset_mib`` (a ballast)."""
        inside = [s for s in self.samples if start <= s.t <= end]
        process = [s.process_mib for s in inside if s.process_mib is not None]
        if process:
            return max(process)
        device = max((s.device_used_mib for s in inside), default=None)
        return None if device is None else device - device_offset_mib

    def to_dict(self, timeline: bool = False, max_points: int = 1000) -> dict[str, Any]:
        """Peaks; with ``timeline``, (seconds since the first sample, device MiB, process MiB, GPU %) rows, at most
        ``max_points`` of them: each keeps the highest sample of its stretch, so no peak is lost."""
        data: dict[str, Any] = {"uuid": self.uuid, "pid": self.pids[0] if self.pids else None,
                                "pids": list(self.pids), "interval_s": self.interval_s,
                                "samples": len(self.samples), "peak_device_mib": self.peak_device_mib,
                                "peak_process_mib": self.peak_process_mib,
                                "peak_process_mib_by_pid": {str(pid): self.peak_of(pid) for pid in self.pids}}
        if len(self.uuids) > 1:
            data["cards"] = self.peaks_by_card()
        if timeline and self.samples:
            t0 = self.samples[0].t
            stride = -(-len(self.samples) // max_points)
            kept = [max(self.samples[i:i + stride], key=lambda s: s.device_used_mib)
                    for i in range(0, len(self.samples), stride)]
            data["t0_monotonic"] = t0
            data["timeline"] = [(round(s.t - t0, 3), s.device_used_mib, s.process_mib, s.gpu_util_pct) for s in kept]
        return data
