"""When a run emulates the profile's card on a bigger GPU (gpu/emulation.py), and the server whose lifetime the
ballast shares (engines/emulated.py). The ballast itself needs libcuda: tests/gpu/test_gpu.py runs it on the device;
here a stand-in records when it is held and released (CUDA cannot run on this machine), around a real llama-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from pytest_vramcap.engines import EngineOptions, LlamaServer
from pytest_vramcap.engines.emulated import EmulatedServer
from pytest_vramcap.errors import ConfigError, EngineStartError
from pytest_vramcap.gpu import ballast as ballast_module
from pytest_vramcap.gpu.emulation import emulation_applies
from pytest_vramcap.gpu.nvml import GpuInfo, detect_gpus
from pytest_vramcap.planner import resolve_profile
from pytest_vramcap.planner.memory import ServerConfig

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-h100", 81_559, "580.159.04")
PROFILE = resolve_profile("16gb")


@pytest.mark.parametrize(("mode", "engine", "gpu", "expected"), [
    ("auto", "llamacpp", H100, True),
    ("on", "llamacpp", H100, True),
    ("off", "llamacpp", H100, False),
    ("auto", "ollama", H100, False),  # someone's server: no ballast beside it
    ("auto", "llamacpp", None, False),
    ("auto", "llamacpp", GpuInfo(0, "a 17,000 MiB card", "GPU-17g", 17_000, "580"), False),  # within 1 GiB of it
])
def test_emulation_applies_on_a_bigger_gpu_to_our_own_server(mode: Any, engine: str, gpu: GpuInfo | None,
                                                             expected: bool) -> None:
    assert emulation_applies(mode, engine, gpu, "no NVIDIA driver", PROFILE) is expected


def test_emulation_that_cannot_be_done_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^--vramcap-emulate=on needs an NVIDIA GPU: no NVIDIA driver$"):
        emulation_applies("on", "llamacpp", None, "no NVIDIA driver", PROFILE)
    small = GpuInfo(0, "RTX 3060", "GPU-3060", 12_288, "580")
    with pytest.raises(ConfigError, match="smaller than profile 16gb"):
        emulation_applies("auto", "llamacpp", small, "", PROFILE)
    two = resolve_profile("2x16gb")
    for mode in ("auto", "off"):  # several cards are planned, not run on GPUs yet; on a CPU the split is ignored
        with pytest.raises(ConfigError, match=r"^profile 2x16gb names 2 cards: runs on GPUs plan one card for now"):
            emulation_applies(mode, "llamacpp", H100, "", two)
    assert emulation_applies("auto", "llamacpp", None, "no NVIDIA driver", two) is False


class RecordingBallast:
    """Stands in for gpu.ballast.Ballast (libcuda): records the order of events."""

    events: ClassVar[list[str]] = []

    def __init__(self, target_free_mib: int) -> None:
        self.target_free_mib, self.held_mib = target_free_mib, 0

    def hold(self) -> RecordingBallast:
        self.held_mib = 64_168
        self.events.append(f"hold {self.target_free_mib}")
        return self

    def release(self) -> None:
        self.events.append("release")


@pytest.fixture
def recording_ballast(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    RecordingBallast.events = []
    monkeypatch.setattr(ballast_module, "Ballast", RecordingBallast)
    return RecordingBallast.events


def test_the_ballast_is_held_while_the_server_runs(tiny_model: Path, tmp_path: Path,
                                                    recording_ballast: list[str]) -> None:
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=512), tiny_model, EngineOptions(log_dir=tmp_path))
    emulated = EmulatedServer(server, H100, "16gb", 16_384).start()
    try:
        assert recording_ballast == ["hold 16384"] and emulated.running and emulated.url == server.url
        assert emulated.describe()["emulated"] == {"gpu_uuid": "GPU-h100", "profile": "16gb", "usable_mib": 16_384,
                                                   "ballast_mib": 64_168}
    finally:
        emulated.stop()
    assert recording_ballast == ["hold 16384", "release"] and not server.running


def test_a_server_that_fails_to_start_releases_the_ballast(tmp_path: Path, recording_ballast: list[str]) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=512), broken,
                         EngineOptions(log_dir=tmp_path, startup_timeout_s=30))
    with pytest.raises(EngineStartError):
        EmulatedServer(server, H100, "16gb", 16_384).start()
    assert recording_ballast == ["hold 16384", "release"]


GPUS, NO_GPU = detect_gpus()


@pytest.mark.skipif(not GPUS, reason=f"needs an NVIDIA GPU: {NO_GPU}")
def test_a_server_planned_with_emulation_runs_on_the_profile_s_memory(tiny_model: Path) -> None:
    from pytest_vramcap.engines.provision import new_server, plan_for_engine
    from pytest_vramcap.options import EMULATE, ENGINE_OPTIONS, PLAN_OPTIONS, with_run_defaults

    values = with_run_defaults({"profile": "8gb", "model": str(tiny_model), "agents": 2, "ctx_per_agent": 1024,
                                "emulate": "auto"}, (*PLAN_OPTIONS, *ENGINE_OPTIONS, EMULATE))
    plan, setup = plan_for_engine(values, "llamacpp")
    assert setup.emulate_on is not None and "of the GPU that runs" in plan.profile.overhead_source
    server = new_server(plan, setup, announce=lambda line: None)
    assert isinstance(server, EmulatedServer)
    server.start()
    try:
        held = server.emulation()["ballast_mib"]
        assert held > 0
    finally:
        server.stop()
    from pytest_vramcap.gpu.ballast import Ballast

    with Ballast(target_free_mib=1024) as probe:  # the ballast is gone: the card's memory is free again
        assert probe.free_before_mib > held
