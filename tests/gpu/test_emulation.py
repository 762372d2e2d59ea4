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


H100_B = GpuInfo(1, "NVIDIA H100 80GB HBM3", "GPU-h100-b", 81_559, "580.159.04")


@pytest.mark.parametrize(("mode", "engine", "gpus", "expected"), [
    ("auto", "llamacpp", [H100], True),
    ("on", "llamacpp", [H100], True),
    ("off", "llamacpp", [H100], False),
    ("auto", "ollama", [H100], False),  # someone's server: no ballast beside it
    ("auto", "llamacpp", [], False),
    ("auto", "llamacpp", [GpuInfo(0, "a 17,000 MiB card", "GPU-17g", 17_000, "580")], False),  # within 1 GiB of it
    ("auto", "llamacpp", [H100, H100_B], True),  # a one-card profile runs on CUDA's device 0 alone
])
def test_emulation_applies_on_a_bigger_gpu_to_our_own_server(mode: Any, engine: str, gpus: list[GpuInfo],
                                                             expected: bool) -> None:
    assert emulation_applies(mode, engine, gpus, "no NVIDIA driver", PROFILE) is expected


def test_emulation_that_cannot_be_done_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^--vramcap-emulate=on needs an NVIDIA GPU: no NVIDIA driver$"):
        emulation_applies("on", "llamacpp", [], "no NVIDIA driver", PROFILE)
    small = GpuInfo(0, "RTX 3060", "GPU-3060", 12_288, "580")
    with pytest.raises(ConfigError, match="smaller than profile 16gb"):
        emulation_applies("auto", "llamacpp", [small], "", PROFILE)


def test_several_cards_are_emulated_card_by_card_on_as_many_gpus() -> None:
    two = resolve_profile("2x16gb")
    assert emulation_applies("auto", "llamacpp", [H100, H100_B], "", two) is True
    assert emulation_applies("off", "llamacpp", [H100, H100_B], "", two) is False  # the real cards
    for mode in ("auto", "off"):  # whatever the mode: llama-server would be told to split over a missing card
        with pytest.raises(ConfigError, match=r"^profile 2x16gb names 2 cards and CUDA sees 1 here"):
            emulation_applies(mode, "llamacpp", [H100], "", two)
    assert emulation_applies("auto", "llamacpp", [], "no NVIDIA driver", two) is False  # a CPU: the split ignored
    mixed = resolve_profile("rtx4080+24gb")
    with pytest.raises(ConfigError, match="smaller than card 24gb of profile rtx4080\\+24gb"):
        emulation_applies("auto", "llamacpp", [H100, GpuInfo(1, "RTX 4080", "GPU-4080", 16_376, "580")], "", mixed)


class RecordingBallast:
    """Stands in for gpu.ballast.Ballast (libcuda): records the order of events."""

    events: ClassVar[list[str]] = []

    def __init__(self, target_free_mib: int, device: int = 0) -> None:
        self.target_free_mib, self.device, self.held_mib, self.free_before_mib = target_free_mib, device, 0, 0

    def hold(self) -> RecordingBallast:
        self.held_mib = 64_168
        self.events.append(f"hold {self.target_free_mib}" + (f" on {self.device}" if self.device else ""))
        return self

    def release(self) -> None:
        self.events.append("release" + (f" {self.device}" if self.device else ""))


@pytest.fixture
def recording_ballast(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    RecordingBallast.events = []
    monkeypatch.setattr(ballast_module, "Ballast", RecordingBallast)
    return RecordingBallast.events


def test_the_ballast_is_held_while_the_server_runs(tiny_model: Path, tmp_path: Path,
                                                    recording_ballast: list[str]) -> None:
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=512), tiny_model, EngineOptions(log_dir=tmp_path))
    emulated = EmulatedServer(server, [H100], "16gb", [16_384]).start()
    try:
        assert recording_ballast == ["hold 16384"] and emulated.running and emulated.url == server.url
        assert emulated.describe()["emulated"] == {"profile": "16gb", "ballast_mib": 64_168, "cards": [
            {"gpu_uuid": "GPU-h100", "usable_mib": 16_384, "ballast_mib": 64_168}]}
    finally:
        emulated.stop()
    assert recording_ballast == ["hold 16384", "release"] and not server.running


def test_a_server_that_fails_to_start_releases_the_ballast(tmp_path: Path, recording_ballast: list[str]) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=512), broken,
                         EngineOptions(log_dir=tmp_path, startup_timeout_s=30))
    with pytest.raises(EngineStartError):
        EmulatedServer(server, [H100], "16gb", [16_384]).start()
    assert recording_ballast == ["hold 16384", "release"]


def test_several_cards_hold_a_ballast_each_and_release_them_all(recording_ballast: list[str]) -> None:
    from pytest_vramcap.gpu.ballast import CardBallasts

    with CardBallasts([16_072, 12_288]) as held:
        assert recording_ballast == ["hold 16072", "hold 12288 on 1"]
        assert held.held_mib == 2 * 64_168
        assert [card["free_target_mib"] for card in held.by_card()] == [16_072, 12_288]
    assert recording_ballast[2:] == ["release", "release 1"]


def test_a_card_that_cannot_be_held_releases_the_ones_before_it(monkeypatch: pytest.MonkeyPatch,
                                                                recording_ballast: list[str]) -> None:
    from pytest_vramcap.errors import BallastError
    from pytest_vramcap.gpu.ballast import CardBallasts

    held = RecordingBallast.hold

    def refuse(self: RecordingBallast) -> RecordingBallast:
        if self.device == 1:
            raise BallastError("cuDeviceGet(1) failed: invalid device ordinal")
        return held(self)

    monkeypatch.setattr(RecordingBallast, "hold", refuse)
    with pytest.raises(BallastError, match="invalid device ordinal"):
        CardBallasts([16_384, 16_384]).hold()
    assert recording_ballast == ["hold 16384", "release", "release 1"]


GPUS, NO_GPU = detect_gpus()


@pytest.mark.skipif(not GPUS, reason=f"needs an NVIDIA GPU: {NO_GPU}")
def test_a_server_planned_with_emulation_runs_on_the_profile_s_memory(tiny_model: Path) -> None:
    from pytest_vramcap.engines.provision import new_server, plan_for_engine
    from pytest_vramcap.options import EMULATE, ENGINE_OPTIONS, PLAN_OPTIONS, with_run_defaults

    values = with_run_defaults({"profile": "8gb", "model": str(tiny_model), "agents": 2, "ctx_per_agent": 1024,
                                "emulate": "auto"}, (*PLAN_OPTIONS, *ENGINE_OPTIONS, EMULATE))
    plan, setup = plan_for_engine(values, "llamacpp")
    assert setup.emulate_on and "of the GPU that runs" in plan.profile.overhead_source
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


def test_a_server_at_a_url_is_not_held_to_this_host_s_cards() -> None:
    # The server runs wherever the URL points: this host's GPU count says nothing about it.
    assert emulation_applies("auto", "url", [H100], "", resolve_profile("2x16gb")) is False


@pytest.mark.parametrize(("profile", "visible", "expected"), [
    ("16gb", [H100, H100_B], "GPU-h100"),  # one card planned, two here: llama.cpp would split over both
    ("2x16gb", [H100, H100_B], "GPU-h100,GPU-h100-b"),  # every GPU is the plan's, in NVML's order
    ("16gb", [H100], None),
    ("16gb", [], None),  # a CPU
])
def test_our_llama_server_sees_only_the_cards_it_was_planned_for(monkeypatch: pytest.MonkeyPatch, profile: str,
                                                                 visible: list[GpuInfo], expected: str | None) -> None:
    from pytest_vramcap.engines import provision
    from pytest_vramcap.gpu import nvml
    from pytest_vramcap.model import spec_from_shape
    from pytest_vramcap.planner import PlanRequest, make_plan

    monkeypatch.setattr(nvml, "detect_gpus", lambda: (visible, "" if visible else "no NVIDIA driver"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plan = make_plan(spec_from_shape("qwen2.5-7b", "Q4_K_M"), resolve_profile(profile), PlanRequest(agents=2))
    env = provision._only_the_plan_s_cards(plan, provision.EngineSetup(engine="llamacpp"))
    assert (env or {}).get("CUDA_VISIBLE_DEVICES") == expected
    if env is not None:
        assert env["PATH"]  # the rest of the environment is kept
    if profile == "16gb" and len(visible) == 2:  # the card a ballast emulates is the one the server gets
        setup = provision.EngineSetup(engine="llamacpp", emulate_on=(H100_B,))
        assert (provision._only_the_plan_s_cards(plan, setup) or {}).get("CUDA_VISIBLE_DEVICES") == "GPU-h100-b"


def test_a_ballast_checks_that_cuda_s_device_is_the_card_nvml_means() -> None:
    """CUDA counts cards fastest first, NVML by PCI bus: on unlike cards CUDA's device 1 may be NVML's card 0. The
    check reads cuDeviceGetUuid (libcuda cannot run here: a stand-in writes the 16 bytes as the driver does)."""
    from pytest_vramcap.errors import BallastError
    from pytest_vramcap.gpu.ballast import Ballast

    class Driver:
        def __init__(self, uuid_hex: str) -> None:
            self.raw = bytes.fromhex(uuid_hex)

        def cuDeviceGetUuid(self, out: Any, device: Any) -> int:
            out._obj[:] = list(self.raw)
            return 0

    uuid = "GPU-118dbb15-5e4c-6e91-03f5-0c3bb2cc1a2d"
    ballast = Ballast(target_free_mib=16_384, device=1, uuid=uuid)
    ballast._check_uuid(Driver("118dbb155e4c6e9103f50c3bb2cc1a2d"))  # the same card: nothing to say
    with pytest.raises(BallastError, match=r"CUDA's device 1 is GPU-22222222-.*not the card NVML counts as 1 "
                                           r"\(GPU-118dbb15-.*CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        ballast._check_uuid(Driver("22" * 16))
