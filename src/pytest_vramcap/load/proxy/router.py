"""What a client connection's handler asks of the proxy that owns it: the seam between the two.

The handlers (:mod:`.server`, :mod:`.forward`) know a :class:`Router`, never the
:class:`~.channels.RecordingProxy` that is one: where a request goes, how to reach the
engine, how a completion's body is changed, how long to wait. The proxy builds its
server on these handlers, so the handlers must not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ...engines.honoured import EngineKind
from ..measure.record import RequestRecord
from .wire import EngineConnection

__all__ = ["ModelRoute", "Recorder", "Router"]


@dataclass(frozen=True)
class ModelRoute:
    """Where a request for one model goes: the engine, the name it serves the model under (None: the name the
    client sent), the model's role in the run (None: a run of one model, whose records name none) and the names a
    client may call it by (its role, the model as given to vramcap, the engine's name for it)."""

    upstream: str
    model: str | None = None
    role: str | None = None
    names: frozenset[str] = frozenset()


class Recorder(Protocol):
    """Where a recorded request is counted as it arrives and kept as it ends, and an unrecorded one counted by
    endpoint (a :class:`~.channels.Channel`)."""

    pass_marker: str
    """A line to put before the first message of each recorded request ("": none)."""

    def begin(self, record: RequestRecord) -> None: ...

    def end(self, record: RequestRecord) -> None: ...

    def passed(self, endpoint: str) -> None:
        """A request passed through unrecorded: its method and path after the channel's prefix."""
        ...


class Router(Protocol):
    """The proxy as its connections see it (:class:`~.channels.RecordingProxy` is one)."""

    @property
    def read_timeout_s(self) -> float:
        """How long the engine may stay silent, before its answer or between its events."""
        ...

    @property
    def generation(self) -> int:
        """Counts the times the proxy was pointed at another engine: a connection to the engine kept from an
        earlier generation is dropped, not reused."""
        ...

    @property
    def idle_timeout_s(self) -> float:
        """How long a kept-alive client connection may stay idle before its thread ends."""
        ...

    def model_route(self, name: str | None) -> ModelRoute | None:
        """Where a request naming model ``name`` goes: the model a client calls so, else the run's first; None
        while the proxy forwards to nothing."""
        ...

    def engine_kind(self) -> EngineKind:
        """What the engine is: Ollama serves its native API itself (else the proxy translates it); what each kind
        reads of a request is in :mod:`pytest_vramcap.engines.honoured`."""
        ...

    def route(self, target: str) -> tuple[Recorder | None, str]:
        """The recorder a request target is for (None: no such channel), and the engine path to forward it to."""
        ...

    def connect(self, route: ModelRoute | None) -> EngineConnection:
        """A new connection to the engine of ``route`` (None: refused, the proxy forwards to nothing)."""
        ...

    def prepare(self, body: dict[str, Any], *, chat: bool, route: ModelRoute | None) -> tuple[bool, bool]:
        """Rewrite a (chat) completion body in place, for ``route``'s model: (stream it from the engine, relay the
        usage-only chunk)."""
        ...
