"""Whether a run makes a bigger GPU offer only a profile's memory (the ballast), decided one way for the pytest
plugin and the Locust file.

On an H100 a 16 GB plan would fit with room to spare: the ballast holds the difference, so an OOM or an offload
happens where it would on the real card. The server's own CUDA context, cuBLAS and pool are the big GPU's, so the
plan carries the running GPU's overhead (:meth:`Profile.with_overhead_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..planner.profiles import Profile, profile_of_gpu
from ..types import EmulateMode
from .nvml import GpuInfo

__all__ = ["AUTO_MARGIN_MIB", "check_cards_present", "emulation_applies", "running_profile"]

# A GPU within this of the profile's usable memory already is that card for the plan's purposes.
AUTO_MARGIN_MIB = 1024


def check_cards_present(profile: Profile, gpus: Sequence[GpuInfo]) -> None:
    """ConfigError (one line) when a GPU host has fewer GPUs than the profile names cards: a server of ours would
    be told to split over cards that are not there. Nothing to check on a CPU (the split is ignored there)."""
    if profile.devices and gpus and len(gpus) < len(profile.devices):
        raise ConfigError(f"profile {profile.name} names {len(profile.devices)} cards and CUDA sees {len(gpus)} "
                          f"here: plan for this host's cards, or run where there are {len(profile.devices)}")


def emulation_applies(mode: EmulateMode, engine: str, gpus: Sequence[GpuInfo], no_gpu_reason: str,
                      profile: Profile, *, option: str = "--vramcap-emulate") -> bool:
    """``mode`` (auto, on, off) for a server of ``engine`` on the GPUs CUDA sees (``gpus``, in its order); ConfigError
    (one line) when emulation is asked for and cannot be done. Only our own llama-server runs beside a ballast (an
    Ollama or a URL is someone's).

    Card ``i`` of the profile is emulated on GPU ``i``. A profile of several cards needs at least as many GPUs on a
    GPU host, whatever the mode, for any server of ours (:func:`check_cards_present`)."""
    cards = profile.cards
    if engine != "url":  # a server at a URL runs wherever it runs
        check_cards_present(profile, gpus)
    if mode == "off" or engine != "llamacpp":
        return False
    if not gpus:
        if mode == "on":
            raise ConfigError(f"{option}=on needs an NVIDIA GPU: {no_gpu_reason}")
        return False
    pairs = list(zip(cards, gpus, strict=False))
    for card, gpu in pairs:
        if gpu.total_mib < card.usable_mib:
            raise ConfigError(f"the GPU ({gpu.name}, {gpu.total_mib} MiB) is smaller than "
                              f"{'card ' + card.name + ' of ' if profile.devices else ''}profile {profile.name} "
                              f"({card.usable_mib} MiB usable): test on the real card or a smaller profile")
    return not (mode == "auto" and all(gpu.total_mib - card.usable_mib < AUTO_MARGIN_MIB for card, gpu in pairs))


def running_profile(gpu: GpuInfo) -> Profile | None:
    """The profile of the GPU that really runs, when we know it (its overhead is what the server pays)."""
    return profile_of_gpu(gpu.name, gpu.total_mib)
