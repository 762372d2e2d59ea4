"""SIGTERM as Ctrl-C, so a cancelled run still stops its server.

CI systems cancel a job with SIGTERM (GitHub Actions after SIGINT, Kubernetes, ``timeout``). Python's
default for SIGTERM ends the process at once: no ``finally``, no atexit, and the llama-server the
run started (its own process group) kept running. Raising KeyboardInterrupt instead takes pytest's
Ctrl-C path: teardown, ``pytest_sessionfinish`` (which stops the server and writes the report) and
exit code 2.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest

__all__ = ["ignore_sigterm", "interrupt_on_sigterm"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    ignore_sigterm()  # once: a second SIGTERM must not interrupt the cleanup the first one started
    raise KeyboardInterrupt("SIGTERM")


def ignore_sigterm() -> None:
    """From here on the run is cleaning up (stopping the server, writing reports): ignore SIGTERM, where ours is
    the handler (GitHub Actions sends SIGTERM some seconds after SIGINT; SIGKILL still ends a stuck run)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def interrupt_on_sigterm(config: pytest.Config) -> None:
    """Install the handler for this run, unless another one is already set; restored at unconfigure."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return  # someone else (an embedding tool, a test runner) handles it already
    signal.signal(signal.SIGTERM, _interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    config.add_cleanup(restore)
