"""The preflight's rule (issue 30): one line naming what holds the GPU when the plan needs more than is free. The
NVML reading runs on a GPU (tests/gpu/test_gpu.py on the device); here the rule, and the no-GPU path."""

from __future__ import annotations

import pytest

from pytest_vramcap.engines.provision import check_gpu_room
from pytest_vramcap.gpu.nvml import detect_gpus
from pytest_vramcap.gpu.room import GpuRoom, Holder, shortfall

ROOM = GpuRoom("NVIDIA GeForce RTX 4080", 6912.0, (Holder(1234, "ollama", 9120.0), Holder(77, "Xorg", 310.0)))


def test_a_plan_that_needs_more_than_is_free_names_who_holds_the_rest() -> None:
    assert shortfall(ROOM, 15030.0) == (
        "the GPU (NVIDIA GeForce RTX 4080) has 6,912 MiB free, the plan needs 15,030 MiB at peak: ollama (pid 1234) "
        "holds 9,120 MiB; Xorg (pid 77) holds 310 MiB; stop it or plan for what is free")


def test_a_plan_that_fits_what_is_free_passes() -> None:
    assert shortfall(ROOM, 6912.0) is None


def test_without_a_gpu_there_is_nothing_to_check() -> None:
    if detect_gpus()[0]:
        pytest.skip("a GPU is here: a plan of a billion MiB would be refused (the device checks NVML's path)")
    from pytest_vramcap.planner import resolve_profile

    assert check_gpu_room((10**9,), 1024, resolve_profile("16gb")) is None
    assert check_gpu_room((10**9, 10**9), 1024, resolve_profile("2x16gb")) is None
