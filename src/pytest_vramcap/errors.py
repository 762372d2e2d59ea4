"""Every exception pytest-vramcap raises on purpose, in one tree.

    VramcapError                    base of everything we raise on purpose
    ├── BadInputError               the user's input is wrong: the CLI exits 2, pytest reports a usage error
    │   ├── ProfileError            an unknown or malformed VRAM profile
    │   ├── ModelSourceError        a model that cannot be found, read or understood
    │   │   └── OllamaUnreachable   ollama:NAME, and no Ollama answers to say what NAME is
    │   ├── ConfigError             contradictory or out-of-range plan options
    │   ├── ScenarioError           a scenario file that is missing, not YAML, or invalid
    │   │   └── GraphError          a scenario's graph cannot be imported or built; carries the user's traceback
    │   └── EngineNotFoundError     no llama-server binary (also an EngineError)
    ├── EngineError                 a server that cannot be started, reached or kept alive: the CLI exits 3
    │   ├── EngineStartError        exited or hung during start-up; carries the log tail
    │   ├── ServerUnreachable       nothing answers at the URL
    │   │   └── NothingListening    refused, or the host does not resolve
    │   └── RequestError            one request failed; carries the partial record (load/measure/record.py,
    │       ├── RequestRefused      beside RequestRecord) the connection was refused or reset before a response
    │       ├── HTTPStatusError     4xx/5xx, or an error sent inside the stream; carries status and body
    │       ├── StreamCut           the stream ended before its final chunk
    │       ├── ProtocolError       an answer that is not the OpenAI stream format (bad JSON, bad counts)
    │       └── RequestTimeout      no complete response within the deadline
    └── BallastError                libcuda is missing or refused the VRAM ballast

    VramcapWarning (a UserWarning)  something worth saying that is not an error (an old Ollama)

The request errors live beside the record they carry (:mod:`pytest_vramcap.load.measure.record`) and are
re-exported by the package's top level; this module imports nothing of the package.

The CLI prints ``vramcap: error: <message>`` for ``BadInputError`` (exit 2) and
``EngineError`` (exit 3); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "BadInputError",
    "BallastError",
    "ConfigError",
    "EngineError",
    "EngineNotFoundError",
    "EngineStartError",
    "GraphError",
    "ModelSourceError",
    "NothingListening",
    "OllamaUnreachable",
    "ProfileError",
    "ScenarioError",
    "ServerUnreachable",
    "VramcapError",
    "VramcapWarning",
    "below_user_traceback",
]


class VramcapError(Exception):
    """Base class for errors raised deliberately by pytest-vramcap."""

    def shown(self, prefix: str = "") -> str:
        """What the user sees: ``prefix`` and the one line (an error that carries more shows it above)."""
        return f"{prefix}{self}"


def below_user_traceback(user_traceback: str, text: str) -> str:
    """``text`` under the user's traceback and a blank line, when their code raised (shown once, as pytest shows a
    test's error); ``text`` alone otherwise."""
    return f"{user_traceback}\n\n{text}" if user_traceback else text


class BadInputError(VramcapError):
    """The input (a flag, a file, a profile) is wrong; exit code 2."""


class ProfileError(BadInputError):
    """A VRAM profile string or profile file could not be understood."""


class ModelSourceError(BadInputError):
    """A model source (GGUF path, shape name, ollama:NAME) could not be used."""


class OllamaUnreachable(ModelSourceError):
    """``ollama:NAME`` was asked of an Ollama that does not answer (the local store may still have it)."""


class ConfigError(BadInputError):
    """Plan options that are out of range or contradict each other."""


class ScenarioError(BadInputError):
    """A scenario file that is missing, not YAML, or not a valid scenario."""


class GraphError(ScenarioError):
    """A scenario's graph (``graph: file.py:build``) cannot be imported or built.

    ``user_traceback`` holds the user's own frames when their code raised, shown once
    above the one-line message (as pytest shows a test's error); empty otherwise.
    """

    def __init__(self, message: str, user_traceback: str = "") -> None:
        super().__init__(message)
        self.user_traceback = user_traceback

    def shown(self, prefix: str = "") -> str:
        return below_user_traceback(self.user_traceback, super().shown(prefix))


class EngineError(VramcapError):
    """A server could not be started, reached or kept alive."""


class EngineNotFoundError(EngineError, BadInputError):
    """No engine binary: a setup problem the user fixes, so it also counts as bad input."""


class EngineStartError(EngineError):
    """The server exited or hung during start-up; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- server log (tail) ---\n{log_tail}" if log_tail else ""))
        self.summary = message
        self.log_tail = log_tail

    def one_line(self) -> str:
        """The summary and the log's last error line: the cause, without the whole tail."""
        errors = [line.split(" E ", 1)[1].strip() for line in self.log_tail.splitlines() if " E " in line[:24]]
        return f"{self.summary}: {errors[-1]}" if errors else self.summary

    def shown(self, prefix: str = "") -> str:
        """One line with the cause; the whole tail stays in the server's log (``str()`` keeps it, for reports)."""
        return f"{prefix}{self.one_line()}"


class ServerUnreachable(EngineError):
    """Nothing answers at the server URL."""


class NothingListening(ServerUnreachable):
    """The server URL refused the connection, or its host does not resolve: no server is there (yet)."""


class BallastError(VramcapError):
    """libcuda is missing or refused the allocation that emulates a smaller GPU."""


class VramcapWarning(UserWarning):
    """A condition that does not stop the run but changes what its numbers mean."""
