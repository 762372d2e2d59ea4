"""llama-server provisioned from a plan: the embedded engine.

A context manager, usable outside pytest::

    with LlamaServer(plan.config, "model.gguf") as server:
        ...  # talk to server.url
    evidence = server.evidence()   # evidence.log.oom, judge_spill(evidence.log), evidence.died
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import DEFAULT_FIT_MARGIN_MIB, DEFAULT_HOST, DEFAULT_STARTUP_TIMEOUT_S
from ..errors import EngineStartError
from ..planner.memory import ServerConfig
from ..planner.render import llama_server_args
from .base import EngineEvidence, free_port, healthy, http_url, port_in_use
from .binary import find_llama_server, has_gpu_backend
from .logparse import ServerLog, parse_server_log
from .process import ManagedProcess, tail

__all__ = ["EngineOptions", "LlamaServer"]


@dataclass
class EngineOptions:
    host: str = DEFAULT_HOST
    port: int | None = None
    """None picks a free port."""
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    log_dir: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    no_repack: bool | None = None
    """``--no-repack``; None adds it for CPU-only builds (the repack path crashes on AMX CPUs)."""
    fit_margin_mib: int = DEFAULT_FIT_MARGIN_MIB
    fit: bool = False
    """llama.cpp ``--fit on`` (Ollama's behaviour: spill layers to the CPU) instead of the plan's ``-ngl``."""
    env: dict[str, str] | None = None


class LlamaServer:
    """A llama-server child started with the plan's flags, ``-lv 4`` and ``--metrics``.

    Implements :class:`~pytest_vramcap.engines.base.Server`.
    """

    def __init__(self, config: ServerConfig, model_path: str | Path, options: EngineOptions | None = None,
                 binary: Path | None = None) -> None:
        self.config = config
        self.model_path = Path(model_path)
        self.options = options or EngineOptions()
        self.binary = binary or find_llama_server()
        self.port = self.options.port or free_port(self.options.host)
        # Without a log_dir the log goes to a directory of our own, removed at stop
        # unless the server died (then its log is the evidence, and kept).
        self._own_log_dir = None if self.options.log_dir else Path(tempfile.mkdtemp(prefix="vramcap-"))
        self.log_path = Path(self.options.log_dir or self._own_log_dir or ".") / f"llama-server-{self.port}.log"
        self._process: ManagedProcess | None = None
        self._log: ServerLog | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return http_url(self.options.host, self.port)

    @property
    def argv(self) -> list[str]:
        argv = [str(self.binary), *llama_server_args(self.config, str(self.model_path),
                                                     fit_margin_mib=self.options.fit_margin_mib, fit=self.options.fit)]
        argv += ["--host", self.options.host, "--port", str(self.port), "-lv", "4", "--metrics", "--no-webui"]
        no_repack = self.options.no_repack
        if no_repack is None:
            no_repack = not has_gpu_backend(self.binary)
        if no_repack:
            argv.append("--no-repack")
        return argv + list(self.options.extra_args)

    @property
    def pid(self) -> int | None:
        process = self._process.process if self._process else None
        return process.pid if process else None

    @property
    def request_model(self) -> str | None:
        return None

    @property
    def pgid(self) -> int | None:
        return self._process.pgid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def exit_code(self) -> int | None:
        """The server's exit code once it has exited, else None."""
        process = self._process.process if self._process else None
        return process.poll() if process else None

    def start(self) -> LlamaServer:
        if not self.model_path.is_file():
            raise EngineStartError(f"model file {str(self.model_path)!r} does not exist")
        if port_in_use(self.options.host, self.port):
            raise EngineStartError(f"port {self.port} on {self.options.host} is already in use")
        self._log = None
        self._stopped = False
        self._process = ManagedProcess(self.argv, self.log_path, env=self.options.env, name="llama-server")
        self._process.start()
        try:
            self._process.wait_until(lambda: healthy(self.url), self.options.startup_timeout_s, "healthy")
        except EngineStartError:
            self._stopped = self._process.stopped  # a start-up timeout stops it; a crash does not
            self._log = self._read_log()  # the evidence outlives the log file
            self._remove_own_log_dir()  # the error carries the log's tail
            raise
        return self

    def stop(self) -> None:
        if self._process is not None:
            died = self.evidence().died
            self._stopped = True
            self._process.stop()
            self._log = self._read_log()
            if died:
                return
        self._remove_own_log_dir()

    def _remove_own_log_dir(self) -> None:
        if self._own_log_dir is not None:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)
            self._own_log_dir = None

    def _read_log(self) -> ServerLog:
        try:
            return parse_server_log(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            return ServerLog()

    @property
    def log(self) -> ServerLog:
        """What the server reported so far (re-read while running, final after stop)."""
        return self._log if self._log is not None else self._read_log()

    def evidence(self) -> EngineEvidence:
        died = self._process is not None and not self._stopped and not self.running
        return EngineEvidence(log=self.log, died=died, exit_code=self.exit_code)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"binary": str(self.binary), "argv": self.argv[1:], "log": str(self.log_path),
                                     "exit_code": self.exit_code}
        final = self.log.final_breakdown
        if final is not None:
            described["memory_breakdown_mib"] = final.__dict__
        return described

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
