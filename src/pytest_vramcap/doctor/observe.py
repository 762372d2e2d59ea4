"""What a running server does, read from the outside.

llama-server says its slots and each slot's context (``/props``, ``/slots``); its KV cache type, flash attention,
batch sizes and GPU layers only on its command line, read from /proc when it runs on this machine. Ollama says
what it has loaded (``/api/ps``: size, size in VRAM, context per slot, expiry); its runner's slots and flags are
on the llama-server command line it started (``/proc``, or its log's "starting llama-server" line, ``--log``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadInputError, ServerUnreachable
from ..net import fetch, redact
from . import procfs
from .flags import RunnerFlags, read_flags

__all__ = ["Observed", "observe_llama_server", "observe_ollama"]

_API_S = 10.0
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


@dataclass(frozen=True)
class Observed:
    """One model as its server runs it. None: the server does not say, and nothing else here could read it."""

    engine: str
    """``llama-server`` or ``ollama``."""
    url: str
    model: str | None
    slots: int | None
    ctx_per_slot: int | None
    flags: RunnerFlags | None = None
    flags_source: str | None = None
    """Where the runner's flags were read: "the command line of pid N", "the log FILE"; None: nowhere."""
    busy_slots: int | None = None
    version: str | None = None
    size_mib: float | None = None
    vram_mib: float | None = None
    expires_at: str | None = None
    """Ollama: when the model unloads unless a request comes (``2318-...``: never)."""
    others: tuple[str, ...] = ()
    """Ollama: the other models loaded beside it (``name: size``)."""
    server_env: dict[str, str] = field(default_factory=dict)
    """``ollama serve``'s OLLAMA_* environment, where this user may read it."""

    def to_dict(self) -> dict[str, Any]:
        data = {key: value for key, value in vars(self).items() if key != "flags"}
        data["url"] = redact(self.url)
        data["flags"] = vars(self.flags) if self.flags is not None else None
        return data


def _get(url: str, path: str) -> Any:
    response = fetch("GET", f"{url}{path}", deadline_s=_API_S)
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _local_port(url: str) -> int | None:
    parts = urlsplit(url)
    if parts.hostname not in _LOCAL_HOSTS:
        return None
    return parts.port or (443 if parts.scheme == "https" else 80)


def _runner_flags(pid: int) -> RunnerFlags | None:
    argv = procfs.argv(pid)
    return read_flags(argv, procfs.environment(pid)) if argv else None


def observe_llama_server(url: str) -> Observed:
    """``/props`` and ``/slots`` of a llama-server, and its command line when it runs here. Raises
    ServerUnreachable when nothing answers, BadInputError when what answers is not llama-server."""
    props = _get(url, "/props")
    if not isinstance(props, dict) or "total_slots" not in props:
        raise BadInputError(f"{redact(url)} is not a llama-server (GET /props has no total_slots): give an "
                            f"Ollama's URL with --ollama-url")
    slots = _get(url, "/slots")
    per_slot = [slot.get("n_ctx") for slot in slots if isinstance(slot, dict)] if isinstance(slots, list) else []
    settings = props.get("default_generation_settings") or {}
    ctx = next((n for n in per_slot if isinstance(n, int)), None) or settings.get("n_ctx")
    busy = sum(1 for slot in slots if isinstance(slot, dict) and slot.get("is_processing")) \
        if isinstance(slots, list) else None
    port = _local_port(url)
    pid = procfs.listening_pid(port) if port is not None else None
    flags = _runner_flags(pid) if pid is not None else None
    return Observed(engine="llama-server", url=url, model=props.get("model_path"), slots=props.get("total_slots"),
                    ctx_per_slot=ctx if isinstance(ctx, int) else None, flags=flags,
                    flags_source=f"the command line of pid {pid}" if flags is not None else None, busy_slots=busy,
                    version=props.get("build_info"))


def observe_ollama(url: str, model: str | None, log: Path | None = None) -> Observed:
    """``/api/ps`` of an Ollama for ``model`` (None: the only model loaded), its runner's flags from this machine's
    processes or from ``log``. Raises ServerUnreachable when nothing answers, BadInputError when what answers is
    not Ollama, or the model is not loaded."""
    version = _get(url, "/api/version")
    if not isinstance(version, dict) or "version" not in version:
        raise BadInputError(f"{redact(url)} is not an Ollama (GET /api/version has no version): give a "
                            f"llama-server's URL with --server-url")
    listed = (_get(url, "/api/ps") or {}).get("models") or []
    loaded = [entry for entry in listed if isinstance(entry, dict)]
    names = [str(entry.get("name")) for entry in loaded]
    if model is None:
        if len(loaded) != 1:
            raise BadInputError(f"Ollama at {redact(url)} has {len(loaded)} models loaded ({', '.join(names) or 'none'}"
                                f"): name the one to check with --served-model NAME (and load it first)")
        entry = loaded[0]
    else:
        full = model if ":" in model else f"{model}:latest"
        found: dict[str, Any] | None = next((each for each in loaded if each.get("name") in (model, full)), None)
        if found is None:
            raise BadInputError(f"Ollama at {redact(url)} has not loaded {model} (loaded: {', '.join(names) or 'none'}"
                                f"): send it a request first, or name another with --served-model")
        entry = found
    name = str(entry.get("name"))
    blob = _model_file(url, name)
    flags, source = _ollama_runner(url, blob, log)
    mib = 1024 * 1024
    return Observed(engine="ollama", url=url, model=name, slots=_int(flags.parallel) if flags else None,
                    ctx_per_slot=entry.get("context_length") if isinstance(entry.get("context_length"), int) else None,
                    flags=flags, flags_source=source, version=str(version["version"]),
                    size_mib=round(entry.get("size", 0) / mib, 1), vram_mib=round(entry.get("size_vram", 0) / mib, 1),
                    expires_at=entry.get("expires_at"),
                    others=tuple(f"{each.get('name')}: {each.get('size', 0) / mib:,.0f} MiB" for each in loaded
                                 if each is not entry),
                    server_env=_ollama_env(url))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _model_file(url: str, name: str) -> str | None:
    """The model's GGUF, from the FROM line of /api/show's modelfile (the blob its runner loads)."""
    try:
        response = fetch("POST", f"{url}/api/show", deadline_s=_API_S, json={"model": name})
        shown = response.json() if response.status_code == 200 else {}
    except (ServerUnreachable, ValueError):
        return None
    found = re.search(r"^FROM (\S+)", str(shown.get("modelfile", "")), re.MULTILINE)
    return found.group(1) if found else None


def _ollama_runner(url: str, blob: str | None, log: Path | None) -> tuple[RunnerFlags | None, str | None]:
    """The runner's flags: a llama-server process here whose --model is ``blob``, else the last "starting
    llama-server" line of ``log`` that names it."""
    if blob is not None and _local_port(url) is not None:
        for pid in procfs.processes():
            argv = procfs.argv(pid)
            if argv and "llama-server" in Path(argv[0]).name and blob in argv:
                return read_flags(argv, procfs.environment(pid)), f"the command line of pid {pid}"
    if log is not None:
        try:
            text = log.read_text(errors="replace")
        except OSError as exc:
            raise BadInputError(f"--log {log}: {exc.strerror or exc}") from None
        starts = [line for line in text.splitlines() if "starting llama-server" in line]
        if not starts and "level=" not in text and "msg=" not in text:
            raise BadInputError(f"--log {log} is not Ollama's server log (no slog lines)")
        for line in reversed(starts):
            found = re.search(r'cmd="([^"]*)"', line)
            argv = shlex.split(found.group(1)) if found else []
            if argv and (blob is None or blob in argv):
                return read_flags(argv), f"the log {log}"
    return None, None


def _ollama_env(url: str) -> dict[str, str]:
    """``ollama serve``'s OLLAMA_* environment, when it listens on this machine and its environ can be read."""
    port = _local_port(url)
    pid = procfs.listening_pid(port) if port is not None else None
    env = procfs.environment(pid) if pid is not None else None
    return {key: value for key, value in (env or {}).items() if key.startswith("OLLAMA_")}
