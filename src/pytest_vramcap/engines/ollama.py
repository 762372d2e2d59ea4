"""Ollama as an engine: ``ollama serve`` started from the plan (or one attached by URL), the
plan's model created and preloaded, and what Ollama serves read back from ``/api/ps``. Several
models share one ``ollama serve``: each is an :class:`OllamaServer` beside the first.

Ollama >= 0.30 runs upstream llama-server underneath (llm/llama_server.go), so its log,
which carries llama-server's, is judged like the embedded engine's. What Ollama itself
reports comes on top: ``/api/ps`` ``size_vram < size`` is a CPU share, ``context_length``
the context per slot it really gave, and a changed entry a reload.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..defaults import DEFAULT_HOST, DEFAULT_STARTUP_TIMEOUT_S
from ..errors import EngineNotFoundError, EngineStartError, ServerUnreachable, VramcapWarning
from ..net import base_url, fetch, redact
from ..planner.memory import ServerConfig
from ..planner.render import ollama_create_request, ollama_env
from .attached import AttachedServer
from .base import EngineEvidence, ServedModel, free_port, healthy, http_url
from .binary import find_executable
from .logparse import parse_server_log
from .process import ManagedProcess, tail

__all__ = ["OllamaServer", "find_ollama", "parse_version"]

# The first release that runs every GGUF in upstream llama-server (#16031); before it Ollama
# had its own memory estimate and runner, which the plan does not model.
LLAMA_SERVER_SINCE = (0, 30)
_API_TIMEOUT_S = 30.0


def find_ollama() -> Path | None:
    """``$VRAMCAP_OLLAMA``, then ``ollama`` on PATH; None when there is neither."""
    return find_executable("VRAMCAP_OLLAMA", "ollama")


def parse_version(text: str) -> tuple[int, int] | None:
    """``0.33.0-rc2`` -> (0, 33); None for anything else."""
    parts = text.strip().lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1].split("-")[0])
    except (IndexError, ValueError):
        return None


class OllamaServer:
    """Implements :class:`~pytest_vramcap.engines.base.Server` for Ollama.

    With ``binary`` it starts ``ollama serve`` in its own process group on a free port of
    127.0.0.1 with the plan's environment and captures its log; without, it attaches to
    ``url`` and leaves that server running. Either way :meth:`start` creates
    ``model_name`` from ``base_model`` (an Ollama model name, or a GGUF file it sends
    as a blob) with the plan's parameters and preloads it.

    ``beside`` another OllamaServer, it adds a model to that one's Ollama: started (or
    attached) and stopped by the first, its own model created, preloaded and watched, its
    own runner's part of the shared log judged (the lines from each "starting llama-server"
    naming its model file; loads are one at a time, so a runner's load lines are its own).
    """

    def __init__(self, config: ServerConfig, base_model: str | Path, model_name: str, *, fit_margin_mib: int,
                 binary: Path | None = None, url: str | None = None, log_dir: Path | None = None,
                 startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S, env: dict[str, str] | None = None,
                 host: str = DEFAULT_HOST, port: int | None = None, beside: OllamaServer | None = None) -> None:
        if beside is not None:
            binary, url, port, log_dir = None, beside.url, None, None
        if binary is None and url is None:
            raise EngineNotFoundError("no ollama binary ($VRAMCAP_OLLAMA, PATH) and no Ollama URL to attach to")
        self.config = config
        self.base_model = base_model
        self.model_name = model_name
        self.fit_margin_mib = fit_margin_mib
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        self.extra_env = env or {}
        self.host = host
        self.port = (port or free_port(host)) if binary else None
        self._url = http_url(host, self.port) if self.port else base_url(url or "")
        self._own_log_dir = None if log_dir or not binary else Path(tempfile.mkdtemp(prefix="vramcap-ollama-"))
        self.log_path = Path(log_dir or self._own_log_dir or ".") / f"ollama-{self.port}.log" if binary else None
        self._owner = beside
        self._own_process: ManagedProcess | None = None
        self._runner_model: str | None = None
        """The model file in this model's "starting llama-server" line (known once it loaded while we watched)."""
        self.version: str | None = None
        self.loaded: ServedModel | None = None
        """The /api/ps entry right after the preload: what later entries are compared with."""
        self._last: ServedModel | None = None
        self._reloads: list[str] = []
        self._starts_at_load = 0

    # ------------------------------------------------------------------ Server protocol
    @property
    def url(self) -> str:
        return self._url

    @property
    def _process(self) -> ManagedProcess | None:
        """The ``ollama serve`` we started, ours or the first model's."""
        return self._host._own_process

    @property
    def _host(self) -> OllamaServer:
        """The model that started (or attached to) the Ollama this one runs on: itself, or the first."""
        return self._owner._host if self._owner is not None else self

    @property
    def _log_path(self) -> Path | None:
        return self._host.log_path

    @property
    def pid(self) -> int | None:
        """This model's llama-server runner when we can see it (it holds the GPU memory), else ``ollama serve``."""
        process = self._process.process if self._process else None
        if process is None:
            return None
        return _runner_child(process.pid, self._runner_model) or process.pid

    @property
    def request_model(self) -> str:
        return self.model_name

    @property
    def running(self) -> bool:
        return self._process.running if self._process is not None else True

    def start(self) -> OllamaServer:
        if self._owner is not None:
            self.version = self._owner.version
        else:
            if self.binary is not None:
                self._serve()
            else:  # someone else's Ollama: wait for it the way any attached server is waited for
                AttachedServer(self.url, self.startup_timeout_s, health_path="/api/version").start()
            self._check_version()
        self._create()
        before = _runner_lines(self._full_log())
        self._preload()
        started = _runner_lines(self._full_log())[len(before):]
        if started:
            found = _MODEL_FLAG.search(started[-1])
            self._runner_model = found.group(1) if found else None
        self.loaded = self._last = self._ps_entry()
        self._starts_at_load = _runner_starts(self._log_text())
        return self

    def stop(self) -> None:
        if self._owner is not None:  # the first model stops the shared Ollama; this one reads /api/ps last
            if self._process is None or self._process.running:
                self._last = self._ps_entry_or_none() or self._last
            return
        if self._process is not None and not self._process.stopped:
            died = not self._process.running
            self._last = self._ps_entry_or_none() or self._last
            self._process.stop()
            if self._own_log_dir is not None and not died:  # a log of our own is kept only as evidence
                shutil.rmtree(self._own_log_dir, ignore_errors=True)

    def evidence(self) -> EngineEvidence:
        """The captured log (when we started Ollama) and a fresh look at /api/ps."""
        text = self._log_text()
        log = parse_server_log(text.splitlines()) if text is not None else None
        if self._process is None or self._process.running:
            current = self._ps_entry_or_none()
            if self.loaded is not None:
                self._note_changes(current, _runner_starts(text))
            if current is not None:
                self._last = current
        died = self._process is not None and not self._process.running and not self._process.stopped
        code = self._process.process.poll() if self._process and self._process.process else None
        return EngineEvidence(log=log, died=died, exit_code=code, served=self._last, reloads=tuple(self._reloads))

    def describe(self) -> dict[str, Any]:
        return {"ollama_version": self.version, "model": self.model_name, "base_model": str(self.base_model),
                "started_by_us": self._host.binary is not None,
                "binary": str(self._host.binary) if self._host.binary else None,
                "log": str(self._log_path) if self._log_path else None, "runner_model_file": self._runner_model,
                "served": self._last.to_dict() if self._last else None, "reloads": list(self._reloads)}

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ start-up steps
    def _serve(self) -> None:
        assert self.binary is not None and self.log_path is not None
        env = {**os.environ, **ollama_env(self.config, fit_margin_mib=self.fit_margin_mib), **self.extra_env,
               "OLLAMA_HOST": http_url(self.host, self.port or 0)}  # envconfig.Host takes a scheme and [v6]
        self._own_process = ManagedProcess([str(self.binary), "serve"], self.log_path, env=env, name="ollama serve")
        self._own_process.start()
        self._own_process.wait_until(lambda: healthy(self.url, "/"), self.startup_timeout_s, "ready")

    def _check_version(self) -> None:
        self.version = str(self._call("GET", "/api/version").get("version", ""))
        parsed = parse_version(self.version)
        if parsed is None or parsed < LLAMA_SERVER_SINCE:
            warnings.warn(VramcapWarning(
                f"Ollama {self.version or '(unknown version)'} is older than 0.30: it does not run llama-server, "
                f"so its memory use differs from the plan's model (llama.cpp's)"), stacklevel=2)

    def _create(self) -> None:
        files = None
        if isinstance(self.base_model, Path):
            files = {_gguf_name(self.base_model): self._upload(self.base_model)}
        body = ollama_create_request(self.config, self.model_name, str(self.base_model), files=files)
        self._call("POST", "/api/create", body, what=f"create {self.model_name} from {self.base_model}")

    def _upload(self, path: Path) -> str:
        """Send a local GGUF to ``/api/blobs/<digest>`` unless Ollama has it (routes.go CreateBlobHandler)."""
        import hashlib

        import httpx

        hasher = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 22):
                    hasher.update(chunk)
        except OSError as exc:
            raise EngineStartError(f"cannot read {path} to send it to Ollama: {exc.strerror or exc}") from None
        digest = f"sha256:{hasher.hexdigest()}"
        url = f"{self.url}/api/blobs/{digest}"
        try:
            with httpx.Client(timeout=httpx.Timeout(_API_TIMEOUT_S, write=None, read=None)) as client:
                if client.head(url).status_code == 200:
                    return digest
                with path.open("rb") as handle:
                    response = client.post(url, content=iter(lambda: handle.read(1 << 22), b""),
                                           headers={"Content-Length": str(path.stat().st_size)})
        except httpx.HTTPError as exc:
            raise EngineStartError(f"cannot send {path.name} to Ollama at {redact(self.url)}: {exc}",
                                   self._tail()) from None
        if response.status_code not in (200, 201):
            raise EngineStartError(f"Ollama refused the model file {path.name}: HTTP {response.status_code}: "
                                   f"{response.text[:300]}", self._tail())
        return digest

    def _preload(self) -> None:
        """``/api/generate`` without a prompt loads the model; Ollama's 500 is the load failure (OOM, usually)."""
        self._call("POST", "/api/generate", {"model": self.model_name, "keep_alive": -1},
                   what=f"load {self.model_name}", deadline_s=self.startup_timeout_s)

    def _call(self, method: str, path: str, body: Any = None, *, what: str = "",
              deadline_s: float = _API_TIMEOUT_S) -> dict[str, Any]:
        response = fetch(method, f"{self.url}{path}", deadline_s=deadline_s, json=body)
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code >= 400:
            message = payload.get("error") if isinstance(payload, dict) else None
            raise EngineStartError(f"Ollama could not {what or path}: HTTP {response.status_code}: "
                                   f"{message or response.text[:300]}", self._tail())
        return payload if isinstance(payload, dict) else {}

    def _tail(self) -> str:
        return tail(self._log_path) if self._log_path else ""

    # ------------------------------------------------------------------ what Ollama serves
    def _ps_entry(self) -> ServedModel | None:
        models = self._call("GET", "/api/ps").get("models") or []
        for entry in models if isinstance(models, list) else []:
            if isinstance(entry, dict) and _same_model(entry.get("name"), self.model_name):
                return ServedModel.from_ollama_ps(entry)
        return None

    def _ps_entry_or_none(self) -> ServedModel | None:
        try:
            return self._ps_entry()
        except (ServerUnreachable, EngineStartError):
            return None

    def _note_changes(self, current: ServedModel | None, runner_starts: int) -> None:
        loaded = self.loaded
        assert loaded is not None
        if current is None:
            change = f"Ollama no longer lists {self.model_name} in /api/ps (unloaded or reloading)"
        elif (current.size_mib, current.vram_mib, current.context_length) != \
                (loaded.size_mib, loaded.vram_mib, loaded.context_length):
            change = f"Ollama reloaded {self.model_name}: /api/ps was {loaded.describe()}, now {current.describe()}"
        elif runner_starts > self._starts_at_load:
            change = f"Ollama restarted llama-server for {self.model_name} during the run (server log)"
        else:
            return
        if change not in self._reloads:
            self._reloads.append(change)

    def _full_log(self) -> str | None:
        """The captured ``ollama serve`` log (every runner's lines inside); None when there is none to read."""
        if self._log_path is None:
            return None
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return None

    def _log_text(self) -> str | None:
        """This model's part of the log: Ollama's own lines before the first runner, and every runner started
        for this model's file (all of it while the file is not known)."""
        text = self._full_log()
        if text is None or self._runner_model is None:
            return text
        kept: list[str] = []
        mine = True
        for line in text.splitlines(keepends=True):
            if "starting llama-server" in line:
                found = _MODEL_FLAG.search(line)
                mine = found is not None and found.group(1) == self._runner_model
            if mine:
                kept.append(line)
        return "".join(kept)


_MODEL_FLAG = re.compile(r"--model\s+(\S+)")
"""The model file on a "starting llama-server" line (llm/llama_server.go puts ``--model PATH`` first)."""


def _runner_lines(log_text: str | None) -> list[str]:
    return [line for line in (log_text or "").splitlines() if "starting llama-server" in line]


def _runner_starts(log_text: str | None) -> int:
    """How many llama-server runners Ollama has started (its "starting llama-server" line each time)."""
    return log_text.count("starting llama-server") if log_text else 0


def _gguf_name(path: Path) -> str:
    return path.name if path.name.endswith(".gguf") else f"{path.name}.gguf"


def _same_model(listed: object, name: str) -> bool:
    full = name if ":" in name else f"{name}:latest"
    return isinstance(listed, str) and listed in (name, full)


def _runner_child(pid: int, model_file: str | None = None) -> int | None:
    """The first descendant of ``pid`` whose command is llama-server (Linux /proc), if any; with ``model_file``,
    the one whose ``--model`` is that file."""
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    for entry in entries:
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        try:
            argv = [arg.decode(errors="replace") for arg in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")]
            if "llama-server" in argv[0] and (model_file is None or model_file in argv):
                return child
        except OSError:
            pass
        queue += children.get(child, [])
    return None

