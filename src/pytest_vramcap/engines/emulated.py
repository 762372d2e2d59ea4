"""A server of ours on a bigger GPU made to look like the profile's card: the ballast lives as long as the server.

The pytest plugin holds its ballast for the whole session (several servers, one card); a single server started by
the Locust file (or any caller of :func:`~.provision.new_server` that asks for emulation) gets it here, so holding
and releasing it cannot come apart from starting and stopping the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import EngineEvidence, Server

if TYPE_CHECKING:
    from ..gpu.ballast import Ballast
    from ..gpu.nvml import GpuInfo

__all__ = ["EmulatedServer"]


class EmulatedServer:
    """``server`` behind a ballast leaving ``usable_mib`` free on ``gpu`` (implements :class:`~.base.Server`)."""

    def __init__(self, server: Server, gpu: GpuInfo, profile: str, usable_mib: int) -> None:
        self.server, self.gpu, self.profile, self.usable_mib = server, gpu, profile, usable_mib
        self.ballast: Ballast | None = None

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
        from ..gpu.ballast import Ballast

        self.ballast = Ballast(target_free_mib=self.usable_mib).hold()
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
        """What the ballast holds, for a view that must leave it out (the Locust VRAM tab)."""
        return {"gpu_uuid": self.gpu.uuid, "profile": self.profile, "usable_mib": self.usable_mib,
                "ballast_mib": self.ballast.held_mib if self.ballast is not None else 0}

    def describe(self) -> dict[str, Any]:
        return {**self.server.describe(), "emulated": self.emulation()}
