"""llama-server provisioned from a plan, or a server attached by URL.

Both are context managers with the same face (``url``, ``start()``, ``stop()``),
usable outside pytest::

    with LlamaServer(plan.config, "model.gguf") as server:
        ...  # talk to server.url
    server.log.oom, server.log.cpu_offload   # what llama-server reported
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..errors import EngineStartError, ServerUnreachable
from .logparse import ServerLog, parse_server_log
from ..memory import ServerConfig
from ..parsers import base_url
from ..render import llama_server_args
from .binary import find_llama_server, has_gpu_backend
from .process import ManagedProcess, tail

__all__ = ["EngineOptions", "LlamaServer", "AttachedServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _healthy(url: str, timeout_s: float = 2.0, path: str = "/health") -> bool:
    try:
        return httpx.get(f"{url}{path}", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class EngineOptions:
    host: str = "127.0.0.1"
    port: int | None = None
    """None picks a free port."""
    startup_timeout_s: float = 300.0
    log_dir: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    no_repack: bool | None = None
    """``--no-repack``; None adds it for CPU-only builds (the repack path crashes on AMX CPUs)."""
    fit_margin_mib: int = 1024
    fit: bool = False
    """llama.cpp ``--fit on`` (Ollama's behaviour: spill layers to the CPU) instead of the plan's ``-ngl``."""
    env: dict[str, str] | None = None


class LlamaServer:
    """A llama-server child started with the plan's flags, ``-lv 4`` and ``--metrics``."""

    def __init__(self, config: ServerConfig, model_path: str | Path, options: EngineOptions | None = None,
                 binary: Path | None = None) -> None:
        self.config = config
        self.model_path = Path(model_path)
        self.options = options or EngineOptions()
        self.binary = binary or find_llama_server()
        self.port = self.options.port or free_port(self.options.host)
        log_dir = self.options.log_dir or Path(tempfile.mkdtemp(prefix="vramcap-"))
        self.log_path = Path(log_dir) / f"llama-server-{self.port}.log"
        self._process: ManagedProcess | None = None
        self._log: ServerLog | None = None

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

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

    def start(self) -> "LlamaServer":
        if not self.model_path.is_file():
            raise EngineStartError(f"model file {str(self.model_path)!r} does not exist")
        if _port_in_use(self.options.host, self.port):
            raise EngineStartError(f"port {self.port} on {self.options.host} is already in use")
        self._log = None
        self._process = ManagedProcess(self.argv, self.log_path, env=self.options.env, name="llama-server")
        self._process.start()
        self._process.wait_until(lambda: _healthy(self.url), self.options.startup_timeout_s, "healthy")
        return self

    def stop(self) -> int | None:
        if self._process is None:
            return None
        code = self._process.stop()
        self._log = self._read_log()
        return code

    def _read_log(self) -> ServerLog:
        try:
            return parse_server_log(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            return ServerLog()

    @property
    def log(self) -> ServerLog:
        """What the server reported so far (re-read while running, final after stop)."""
        return self._log if self._log is not None else self._read_log()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class AttachedServer:
    """A server someone else runs: we check it answers and never stop it."""

    def __init__(self, url: str, startup_timeout_s: float = 30.0, health_path: str = "/health") -> None:
        self.url = base_url(url)
        self.startup_timeout_s = startup_timeout_s
        self.health_path = health_path

    def start(self) -> "AttachedServer":
        import time

        deadline = time.monotonic() + self.startup_timeout_s
        while not _healthy(self.url, path=self.health_path):
            if time.monotonic() > deadline:
                raise ServerUnreachable(f"no healthy server at {self.url} (GET {self.health_path}) within "
                                        f"{self.startup_timeout_s:.0f} s")
            time.sleep(0.25)
        return self

    def stop(self) -> None:
        return None

    def __enter__(self) -> "AttachedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
