"""A server someone else runs, attached by URL: checked, talked to, never stopped."""

from __future__ import annotations

import time
from typing import Any

from ..errors import ConfigError, NothingListening, ServerUnreachable
from ..net import base_url, fetch, redact
from .base import EngineEvidence

__all__ = ["NOTHING_LISTENING_GRACE_S", "AttachedServer"]

NOTHING_LISTENING_GRACE_S = 5.0
"""How long a URL may refuse connections (or its host not resolve) before the wait for it ends: long enough for a
server being restarted to bind its port again, short enough that a typo in a port costs seconds, not the startup
timeout (which is for a server that accepts connections and says it is still loading)."""


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
        """Wait until the server answers its health check (200): through its loading (503) for up to the startup
        timeout, but only NOTHING_LISTENING_GRACE_S while nothing listens at the URL."""
        deadline = time.monotonic() + self.startup_timeout_s
        refused_since: float | None = None
        while True:
            try:
                if fetch("GET", f"{self.url}{self.health_path}", deadline_s=2.0).status_code == 200:
                    return self
                refused_since = None
            except NothingListening as exc:
                refused_since = refused_since or time.monotonic()
                if time.monotonic() - refused_since >= NOTHING_LISTENING_GRACE_S:
                    raise NothingListening(f"nothing listens at {redact(self.url)} (connection refused or the "
                                           f"host does not resolve, for {NOTHING_LISTENING_GRACE_S:.0f} s): "
                                           f"{str(exc).split(': ', 1)[-1]}") from None
            except ServerUnreachable:
                refused_since = None  # it accepted the connection: a slow server gets the startup timeout
            if time.monotonic() > deadline:
                raise ServerUnreachable(f"no healthy server at {redact(self.url)} (GET {self.health_path}) within "
                                        f"{self.startup_timeout_s:.0f} s")
            time.sleep(0.25)

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
