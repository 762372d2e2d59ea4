"""Exceptions raised by pytest-vramcap.

    VramcapError                  base of everything we raise on purpose
    ├── BadInputError             the user's input is wrong; the CLI exits 2 with one line
    │   ├── ProfileError          an unknown or malformed VRAM profile
    │   ├── ModelSourceError      a model that cannot be found, read or understood
    │   ├── ConfigError           contradictory or out-of-range plan options
    │   └── EngineNotFoundError   no llama-server binary (also an EngineError)
    └── EngineError               a server that cannot be started, reached or kept alive
        ├── EngineStartError      exited or hung during start-up; carries the log tail
        ├── ServerUnreachable     nothing answers at the URL
        └── RequestError          one request failed (see RequestError for its four kinds)

The CLI catches ``BadInputError`` and prints ``vramcap: error: <message>``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "VramcapError",
    "BadInputError",
    "ProfileError",
    "ModelSourceError",
    "ConfigError",
    "EngineError",
    "EngineNotFoundError",
    "EngineStartError",
    "ServerUnreachable",
    "RequestError",
    "RequestRefused",
    "HTTPStatusError",
    "StreamCut",
    "RequestTimeout",
]


class VramcapError(Exception):
    """Base class for errors raised deliberately by pytest-vramcap."""


class BadInputError(VramcapError):
    """The input (a flag, a file, a profile) is wrong; exit code 2."""


class ProfileError(BadInputError):
    """A VRAM profile string or profile file could not be understood."""


class ModelSourceError(BadInputError):
    """A model source (GGUF path, shape name, ollama:NAME) could not be used."""


class ConfigError(BadInputError):
    """Plan options that are out of range or contradict each other."""


class EngineError(VramcapError):
    """A server could not be started, reached or kept alive.

    EngineError
    ├── EngineNotFoundError   no llama-server binary (the message says how to install one)
    ├── EngineStartError      the server exited or hung during start-up (carries the log tail)
    └── ServerUnreachable     nothing answers at the URL
    """


class EngineNotFoundError(EngineError, BadInputError):
    """No engine binary: a setup problem the user fixes, so it also counts as bad input."""


class EngineStartError(EngineError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- server log (tail) ---\n{log_tail}" if log_tail else ""))
        self.summary = message
        self.log_tail = log_tail


class ServerUnreachable(EngineError):
    """Nothing answers at the server URL."""


class RequestError(EngineError):
    """A request to a running server failed.

    RequestError
    ├── RequestRefused      the connection was refused or reset before a response
    ├── HTTPStatusError     4xx/5xx; carries status and body
    ├── StreamCut           the stream ended before the final chunk / [DONE]
    └── RequestTimeout      no response, or a stall longer than the read timeout

    ``record`` carries the partial RequestRecord (timestamps up to the failure).
    """

    record: Any = None


class RequestRefused(RequestError, ServerUnreachable):
    pass


class HTTPStatusError(RequestError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class StreamCut(RequestError):
    pass


class RequestTimeout(RequestError):
    pass
