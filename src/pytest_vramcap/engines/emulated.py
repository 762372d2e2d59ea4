"""A server of ours on a bigger GPU made to look like the profile's card: the ballast lives as long as the server.

The pytest plugin holds its ballasts (one per card) for the whole session and its several servers; a single server
started by the Locust file (or any caller of :func:`~.provision.new_server` that asks for emulation) gets them
here, so holding and releasing them cannot come apart from starting and stopping the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import EngineEvidence, Server

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..gpu.ballast import CardBallasts
    from ..gpu.nvml import GpuInfo

__all__ = ["EmulatedServer"]


class EmulatedServer:
    """``server`` behind a ballast on each of ``gpus`` (CUDA's order), leaving card ``i`` of the profile its
    ``usable_mibs[i]`` free (implements :class:`~.base.Server`)."""

    def __init__(self, server: Server, gpus: Sequence[GpuInfo], profile: str, usable_mibs: Sequence[int]) -> None:
        self.server, self.gpus, self.profile, self.usable_mibs = server, list(gpus), profile, list(usable_mibs)
        self.ballast: CardBallasts | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def request_model(self) -> str | None:
        return self.server.request_model

    @property
    def running(self) -> bool:
        return self.server.running

    def start(self) -> EmulatedServer:
        from ..gpu.ballast import CardBallasts

        self.ballast = CardBallasts(self.usable_mibs, [gpu.uuid for gpu in self.gpus]).hold()
        try:
            self.server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            if self.ballast is not None:
                self.ballast.release()  # idempotent; held_mib stays for the report

    def evidence(self) -> EngineEvidence:
        return self.server.evidence()

    def emulation(self) -> dict[str, Any]:
        """What the ballasts hold, card by card, for a view that must leave them out (the Locust VRAM tab)."""
        held = self.ballast.cards if self.ballast is not None else []
        return {"profile": self.profile, "ballast_mib": sum(ballast.held_mib for ballast in held),
                "cards": [{"gpu_uuid": gpu.uuid, "usable_mib": usable,
                           "ballast_mib": held[index].held_mib if index < len(held) else 0}
                          for index, (gpu, usable) in enumerate(zip(self.gpus, self.usable_mibs, strict=True))]}

    def describe(self) -> dict[str, Any]:
        return {**self.server.describe(), "emulated": self.emulation()}
