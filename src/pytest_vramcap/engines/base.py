"""What every engine offers: the :class:`Server` protocol and the :class:`EngineEvidence` verdicts read.

The embedded llama-server and a server attached by URL implement it today; the
Ollama engine implements the same protocol. Callers never ask which kind they
hold: the verdicts read ``evidence()``, the report reads ``describe()``, and the
GPU sampler follows ``pid``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ..defaults import DEFAULT_HOST, MIB
from ..errors import ServerUnreachable
from ..net import fetch
from .logparse import ServerLog

__all__ = ["EngineEvidence", "ServedModel", "Server", "free_port", "healthy", "http_url", "port_in_use"]

S = TypeVar("S", bound="Server")


@dataclass(frozen=True)
class ServedModel:
    """What an engine itself reports about the loaded model (Ollama's ``/api/ps`` entry)."""

    name: str
    size_mib: float
    vram_mib: float
    """The part of ``size`` in GPU memory; Ollama computes both from llama-server's buffer lines."""
    context_length: int | None
    """Context per slot after Ollama's clamping (api/types.go ProcessModelResponse)."""

    @classmethod
    def from_ollama_ps(cls, entry: dict[str, Any]) -> ServedModel:
        def mib(key: str) -> float:
            value = entry.get(key)
            return round(float(value) / MIB, 2) if isinstance(value, (int, float)) else 0.0

        context = entry.get("context_length")
        return cls(name=str(entry.get("name", "")), size_mib=mib("size"), vram_mib=mib("size_vram"),
                   context_length=context if isinstance(context, int) else None)

    @property
    def cpu_percent(self) -> int:
        """``ollama ps``'s CPU share (cmd/cmd.go): round((size - size_vram) / size * 100)."""
        return round((self.size_mib - self.vram_mib) / self.size_mib * 100) if self.size_mib > 0 else 0

    def describe(self) -> str:
        return (f"size {self.size_mib:.0f} MiB, size_vram {self.vram_mib:.0f} MiB ({self.cpu_percent}% CPU), "
                f"context_length {self.context_length}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size_mib": self.size_mib, "vram_mib": self.vram_mib,
                "context_length": self.context_length, "cpu_percent": self.cpu_percent}


@dataclass(frozen=True)
class EngineEvidence:
    """What the OOM and offload verdicts need from an engine, read in one place."""

    log: ServerLog | None
    """What the server logged about memory; None when there is no log we can read (attached)."""
    died: bool = False
    """The process we started exited without being asked to (at start-up or during the run)."""
    exit_code: int | None = None
    """Its exit code once it has exited."""
    served: ServedModel | None = None
    """What the engine says it serves (Ollama's /api/ps); None when it says nothing (llama-server)."""
    reloads: tuple[str, ...] = ()
    """Each time the engine reloaded or dropped the model during the run, in words."""


@runtime_checkable
class Server(Protocol):
    """A model server the run talks to over HTTP."""

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash (the OpenAI API is under ``/v1``)."""
        ...

    @property
    def pid(self) -> int | None:
        """The process whose GPU memory to watch; None when the server is not ours."""
        ...

    @property
    def request_model(self) -> str | None:
        """The ``model`` every request must name; None when the server serves one model whatever is named."""
        ...

    @property
    def running(self) -> bool:
        """Whether the server is up: the process we started has not exited (a server we did not start: True)."""
        ...

    def start(self: S) -> S:
        """Start (or check) the server and return once it answers; raises an EngineError kind."""
        ...

    def stop(self) -> None:
        """Stop what we started (idempotent); a server we did not start is left alone."""
        ...

    def evidence(self) -> EngineEvidence:
        """What the server reported so far (final once stopped)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the run report records about this engine."""
        ...


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def http_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def healthy(url: str, path: str = "/health", timeout_s: float = 2.0) -> bool:
    """Whether ``GET url+path`` answers 200 within ``timeout_s`` (a slow drip is not an answer)."""
    try:
        return fetch("GET", f"{url}{path}", deadline_s=timeout_s).status_code == 200
    except ServerUnreachable:
        return False
