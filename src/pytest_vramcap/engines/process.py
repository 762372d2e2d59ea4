"""A child process that always goes away: its own process group, a log file,
fail-fast start-up, group kill on stop, and an atexit backstop.

Modelled on mirakuru's executors. Engines fork helpers (CUDA, OpenMP threads in
children, Ollama's runner), so stopping means signalling the whole group.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import EngineStartError

__all__ = ["ManagedProcess", "group_alive", "tail"]

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies included until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """Start ``argv`` in a new session, logging stdout+stderr to ``log_path``."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 name: str = "server") -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = env
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self.stopped = False
        """Whether :meth:`stop` was called (a child that exited on its own was not stopped)."""

    def start(self) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("wb")
        except OSError as exc:
            raise EngineStartError(f"cannot write the {self.name} log {str(self.log_path)!r}: "
                                   f"{exc.strerror or exc}") from None
        try:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )
        except OSError as exc:
            log.close()
            raise EngineStartError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from None
        log.close()
        self.pgid = self.process.pid  # a new session's leader: its pid is the group id
        _LIVE.add(self)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.1) -> None:
        """Poll ``ready`` until it holds; fail fast with the log tail if the child exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise EngineStartError(f"{self.name} exited with code {code} before {what}", tail(self.log_path))
            if ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise EngineStartError(f"{self.name} did not become {what} within {timeout_s:.0f} s",
                                       tail(self.log_path))
            time.sleep(poll_s)

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGINT the group (llama-server prints its memory breakdown), then TERM, then KILL."""
        if self.process is None or self.pgid is None:
            return None
        self.stopped = True
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if not group_alive(self.pgid):
                break
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not group_alive(self.pgid):
                    break
                time.sleep(0.05)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was sent above
            pass
        _LIVE.discard(self)
        return self.process.returncode


@atexit.register
def _reap_leftovers() -> None:
    """Backstop: a test run that forgot (or could not) stop a server still kills it."""
    for managed in list(_LIVE):
        if managed.pgid is not None and group_alive(managed.pgid):
            try:
                os.killpg(managed.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
