"""A server someone else runs, attached by URL: checked, talked to, never stopped."""

from __future__ import annotations

import time
from typing import Any

from ..errors import ConfigError, ServerUnreachable
from ..net import base_url, redact
from .base import EngineEvidence, healthy

__all__ = ["AttachedServer"]


class AttachedServer:
    """Implements :class:`~pytest_vramcap.engines.base.Server` for a URL; there is no log or process to read."""

    def __init__(self, url: str, startup_timeout_s: float = 30.0, health_path: str = "/health",
                 request_model: str | None = None) -> None:
        try:
            self._url = base_url(url)
        except ValueError as exc:
            raise ConfigError(f"server URL: {exc}") from None
        self.startup_timeout_s = startup_timeout_s
        self.health_path = health_path
        self._request_model = request_model

    @property
    def url(self) -> str:
        return self._url

    @property
    def pid(self) -> int | None:
        return None

    @property
    def request_model(self) -> str | None:
        """The model name requests carry: the one the server's owner serves under (None: any, a one-model server)."""
        return self._request_model

    @property
    def running(self) -> bool:
        return True  # not ours to watch: a request that finds it gone says so

    def start(self) -> AttachedServer:
        """Wait until the server answers its health check."""
        deadline = time.monotonic() + self.startup_timeout_s
        while not healthy(self.url, self.health_path):
            if time.monotonic() > deadline:
                raise ServerUnreachable(f"no healthy server at {redact(self.url)} (GET {self.health_path}) within "
                                        f"{self.startup_timeout_s:.0f} s")
            time.sleep(0.25)
        return self

    def stop(self) -> None:
        return None

    def evidence(self) -> EngineEvidence:
        return EngineEvidence(log=None)

    def describe(self) -> dict[str, Any]:
        return {"health_path": self.health_path}

    def __enter__(self) -> AttachedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
