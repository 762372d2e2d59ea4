"""NVML readings card by card (issue 29): the sampler follows every card a model is split over.

NVML with several GPUs cannot run on this machine, so these tests stand a double in for ``pynvml`` (nvidia-ml-py):
only the calls the sampler makes, with nvidia-ml-py's names and shapes (``nvmlDeviceGetMemoryInfo`` returns bytes in
``total``/``free``/``used``; ``nvmlDeviceGetComputeRunningProcesses`` objects with ``pid`` and ``usedGpuMemory``
in bytes, None where the driver cannot tell; ``nvmlDeviceGetUtilizationRates`` a ``gpu`` percentage).
tests/gpu/test_gpu.py runs the real one on the device.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field

import pytest

from pytest_vramcap.defaults import MIB
from pytest_vramcap.gpu.nvml import MemorySampler


@dataclass
class Card:
    used_mib: float
    processes: dict[int, float | None] = field(default_factory=dict)
    total_mib: float = 16_384


def nvml_double(cards: dict[str, Card]) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def memory(uuid: str) -> types.SimpleNamespace:
        card = cards[uuid]
        return types.SimpleNamespace(total=int(card.total_mib * MIB), used=int(card.used_mib * MIB),
                                     free=int((card.total_mib - card.used_mib) * MIB))

    def processes(uuid: str) -> list[types.SimpleNamespace]:
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=None if mib is None else int(mib * MIB))
                for pid, mib in cards[uuid].processes.items()]

    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.nvmlInit = lambda: None  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByUUID = lambda uuid: uuid  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    module.nvmlDeviceGetComputeRunningProcesses = processes  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = lambda uuid: types.SimpleNamespace(gpu=40, memory=10)  # type: ignore[attr-defined]
    return module


def sampled(cards: dict[str, Card], pids: tuple[int, ...], change: dict[str, Card],
            monkeypatch: pytest.MonkeyPatch) -> MemorySampler:
    """Two samples: the first taken as the sampler starts, the second as it stops, after ``change``."""
    monkeypatch.setitem(__import__("sys").modules, "pynvml", nvml_double(cards))
    sampler = MemorySampler(tuple(cards), pids=pids, interval_s=3600).start()
    deadline = time.monotonic() + 30
    while not sampler.samples:  # the thread's first sample
        assert time.monotonic() < deadline, "the sampler took no first sample"
        time.sleep(0.01)
    cards.update(change)
    return sampler.stop()


def test_each_card_keeps_its_own_peak_and_the_process_is_summed_over_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # A model split over two cards: its one llama-server process holds memory on both; another process on card 1.
    cards = {"GPU-a": Card(9_000, {4242: 8_400}), "GPU-b": Card(7_000, {4242: 6_100, 99: 500})}
    sampler = sampled(cards, (4242,), {"GPU-a": Card(9_500, {4242: 8_900}), "GPU-b": Card(6_800, {4242: 5_900})},
                      monkeypatch)
    assert [s.by_card for s in sampler.samples] == [(9_000, 7_000), (9_500, 6_800)]
    assert sampler.peak_device_mib == 16_300 and sampler.peak_process_mib == 14_800
    assert sampler.peak_of(4242) == 14_800  # the process over both cards, not either card's share
    data = sampler.to_dict()
    assert data["uuid"] == "GPU-a" and data["cards"] == [
        {"uuid": "GPU-a", "peak_device_mib": 9_500, "peak_process_mib": 8_900},
        {"uuid": "GPU-b", "peak_device_mib": 7_000, "peak_process_mib": 6_100},
    ]


def test_one_card_reads_as_before_and_a_process_nvml_cannot_see_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a container NVML may list the process without its memory (usedGpuMemory None) or not at all.
    cards = {"GPU-a": Card(12_000, {77: None})}
    sampler = sampled(cards, (77,), {}, monkeypatch)
    assert sampler.peak_device_mib == 12_000 and sampler.peak_process_mib is None
    assert "cards" not in sampler.to_dict()
    assert sampler.peaks_by_card() == [{"uuid": "GPU-a", "peak_device_mib": 12_000, "peak_process_mib": None}]
