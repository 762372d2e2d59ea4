"""Whether a run makes a bigger GPU offer only a profile's memory (the ballast), decided one way for the pytest
plugin and the Locust file.

On an H100 a 16 GB plan would fit with room to spare: the ballast holds the difference, so an OOM or an offload
happens where it would on the real card. The server's own CUDA context, cuBLAS and pool are the big GPU's, so the
plan carries the running GPU's overhead (:meth:`Profile.with_overhead_of`).
"""

from __future__ import annotations

from ..errors import ConfigError
from ..planner.profiles import Profile, profile_of_gpu
from ..types import EmulateMode
from .nvml import GpuInfo

__all__ = ["AUTO_MARGIN_MIB", "emulation_applies", "running_profile"]

# A GPU within this of the profile's usable memory already is that card for the plan's purposes.
AUTO_MARGIN_MIB = 1024


def emulation_applies(mode: EmulateMode, engine: str, gpu: GpuInfo | None, no_gpu_reason: str, profile: Profile, *,
                      option: str = "--vramcap-emulate") -> bool:
    """``mode`` (auto, on, off) for a server of ``engine`` on ``gpu``; ConfigError (one line) when emulation is asked
    for and cannot be done. Only our own llama-server runs beside a ballast (an Ollama or a URL is someone's).

    A profile of several cards is refused on any GPU host, whatever the mode and engine: the run would read one
    card's memory (NVML, the ballast, the preflight) against a plan for several. On a CPU it runs (the split is
    ignored there)."""
    usable = profile.usable_mib
    if profile.devices and gpu is not None:
        raise ConfigError(f"profile {profile.name} names {len(profile.devices)} cards: runs on GPUs plan one card for "
                          f"now (a ballast and NVML readings per card are not built); `vramcap plan --profile "
                          f"{profile.name}` plans the split")
    if mode == "off" or engine != "llamacpp":
        return False
    if gpu is None:
        if mode == "on":
            raise ConfigError(f"{option}=on needs an NVIDIA GPU: {no_gpu_reason}")
        return False
    if gpu.total_mib < usable:
        raise ConfigError(f"the GPU ({gpu.name}, {gpu.total_mib} MiB) is smaller than profile {profile.name} "
                          f"({usable} MiB usable): test on the real card or a smaller profile")
    return not (mode == "auto" and gpu.total_mib - usable < AUTO_MARGIN_MIB)


def running_profile(gpu: GpuInfo) -> Profile | None:
    """The profile of the GPU that really runs, when we know it (its overhead is what the server pays)."""
    return profile_of_gpu(gpu.name, gpu.total_mib)
