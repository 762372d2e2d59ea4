"""Talking to the user from inside a pytest run, past output capture."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Protocol

import pytest

__all__ = ["Console", "PytestConsole", "is_worker"]


class Console(Protocol):
    def announce(self, message: str) -> None:
        """One progress line the user should see now."""
        ...

    def uncaptured(self) -> AbstractContextManager[None]:
        """A block whose stderr reaches the terminal (a long synth's progress)."""
        ...


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker."""
    return hasattr(config, "workerinput")


class PytestConsole:
    """Writes through the terminal reporter with capture suspended, as pdb does; silent on xdist workers."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def uncaptured(self) -> AbstractContextManager[None]:
        capture = self._config.pluginmanager.getplugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()

    def announce(self, message: str) -> None:
        reporter = self._config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None and not is_worker(self._config):
            with self.uncaptured():
                reporter.write_line(message)
