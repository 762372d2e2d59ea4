"""NVML telemetry and the VRAM ballast. On machines without an NVIDIA driver (CI) they must
say so in one line and never break a run; the GPU behaviour itself is recorded in docs/gpu.md,
measured on an H100 with benchmarks/gpu/run_on_device.sh."""

from __future__ import annotations

import time

import pytest

from pytest_vramcap.errors import BallastError
from pytest_vramcap.gpu.nvml import GpuInfo, detect_gpus, memory_in_use, visible_gpu, visible_gpus

pytest_plugins = ["pytester"]

GPUS, REASON = detect_gpus()
needs_gpu = pytest.mark.skipif(not GPUS, reason=f"needs an NVIDIA GPU: {REASON}")

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-118dbb15-8a78-753d-9d11-c710503bf19d", 81559, "580.159.04")
L4 = GpuInfo(1, "NVIDIA L4", "GPU-2222aaaa-0000-0000-0000-000000000000", 23034, "580.159.04")


def test_no_driver_is_a_reason_not_an_error() -> None:
    if GPUS:
        pytest.skip("this machine has a GPU")
    assert GPUS == [] and REASON and "\n" not in REASON


@pytest.mark.parametrize("visible, expected", [(None, H100), ("1", L4), ("GPU-2222aaaa", L4), ("", None),
                                               ("7", None)])
def test_visible_gpu_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch, visible: str | None,
                                                  expected: GpuInfo | None) -> None:
    """NVML numbers GPUs physically; CUDA's device 0 is the first of CUDA_VISIBLE_DEVICES."""
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpu([H100, L4]) == expected


@pytest.mark.parametrize("visible, expected", [(None, [H100, L4]), ("1,0", [L4, H100]), ("1,7,0", [L4]),
                                               ("GPU-118dbb15, 1", [H100, L4]), ("", [])])
def test_visible_gpus_are_in_cudas_order(monkeypatch: pytest.MonkeyPatch, visible: str | None,
                                         expected: list[GpuInfo]) -> None:
    """CUDA numbers the listed devices in the list's order and stops at the first entry it cannot resolve: the
    VRAM tab shows the GPUs the server can use, in the order its log names them."""
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus([H100, L4]) == expected


def test_memory_in_use_without_a_driver_is_a_reason() -> None:
    if GPUS:
        pytest.skip("this machine has a GPU")
    gpus, why = memory_in_use()
    assert gpus == [] and why and "\n" not in why


def test_emulation_without_a_gpu_is_a_usage_error(pytester: pytest.Pytester) -> None:
    if GPUS:
        pytest.skip("this machine has a GPU")
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "--vramcap-emulate=on", "--vramcap-model=tiny:Q8_0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vramcap-emulate=on needs an NVIDIA GPU*"])


def test_ballast_without_libcuda_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    if GPUS:
        pytest.skip("this machine has a GPU")
    from pytest_vramcap.gpu import ballast

    monkeypatch.setattr(ballast.ctypes.util, "find_library", lambda name: "libcuda-that-is-not-here.so")
    with pytest.raises(BallastError, match="cannot load libcuda"):
        ballast.Ballast(target_free_mib=16384).hold()


@needs_gpu
def test_sampler_and_ballast_on_a_real_gpu() -> None:
    from pytest_vramcap.gpu.ballast import Ballast, CardBallasts
    from pytest_vramcap.gpu.nvml import MemorySampler

    gpu = visible_gpu(GPUS)
    assert gpu is not None
    target = min(gpu.total_mib // 2, 16384)
    sampler = MemorySampler((gpu.uuid,), interval_s=0.01).start()
    with CardBallasts([target]) as held:  # a profile of one card: one ballast, on CUDA's device 0
        free, _ = held.cards[0].free_and_total_mib()
        assert abs(free - target) <= 64 and held.held_mib > 0
        assert held.by_card()[0]["free_target_mib"] == target
        time.sleep(0.5)  # let the sampler see it
    sampler.stop()
    assert sampler.peak_device_mib is not None and sampler.peak_device_mib >= held.held_mib
    assert sampler.peaks_by_card()[0]["peak_device_mib"] == sampler.peak_device_mib
    with pytest.raises(Exception, match="less than the profile"):
        Ballast(target_free_mib=gpu.total_mib + 1024).hold()
