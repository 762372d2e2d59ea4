"""A ModelSpec from Ollama's ``POST /api/show`` (asked with ``"verbose": true``), live or saved to a file.

``model_info`` holds the GGUF keys, ``tensors`` the tensor infos; without
``verbose`` Ollama drops both, so such an answer is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelSourceError, OllamaUnreachable, ServerUnreachable
from ..net import checked_url, fetch, ollama_host_url, redact
from ..parsers import checked_number
from .ggmltypes import type_by_name
from .metadata import spec_from_metadata
from .source import OllamaModel, ShowJsonFile
from .spec import ModelSpec, Tensor

__all__ = ["fetch_show", "read_show_file", "spec_from_ollama_show"]


def fetch_show(model: str, url: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """``/api/show`` (``verbose: true``) from the Ollama at ``url`` (default ``$OLLAMA_HOST``) within ``timeout_s``."""
    try:
        base = checked_url(ollama_host_url(url or os.environ.get("OLLAMA_HOST")))
    except ValueError as exc:
        raise ModelSourceError(f"ollama:{model}: {exc}") from None
    try:
        response = fetch("POST", f"{base}/api/show", json={"model": model, "verbose": True}, deadline_s=timeout_s)
    except ServerUnreachable as exc:
        raise OllamaUnreachable(f"ollama:{model}: cannot reach Ollama: {exc}") from None
    if response.status_code == 404:
        raise ModelSourceError(f"ollama:{model}: model not found on {redact(base)} (ollama pull {model})")
    if response.status_code != 200:
        raise ModelSourceError(f"ollama:{model}: /api/show answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = response.json()
    except (ValueError, RecursionError):
        raise ModelSourceError(f"ollama:{model}: /api/show did not return JSON") from None
    if not isinstance(body, dict):
        raise ModelSourceError(f"ollama:{model}: /api/show returned {type(body).__name__}, not an object")
    return body


def read_show_file(path: Path) -> dict[str, Any]:
    """A saved ``/api/show`` answer (a regular file: a FIFO or a device would block or never end)."""
    try:
        if not path.is_file():
            raise ModelSourceError(f"{str(path)[:200]!r} is not a regular file")
        body = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelSourceError(f"{str(path)!r}: not a readable /api/show JSON file: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{str(path)!r}: not a readable /api/show JSON file: {exc}") from None
    if not isinstance(body, dict):
        raise ModelSourceError(f"{str(path)!r}: an /api/show answer is a JSON object, not {type(body).__name__}")
    return body


def spec_from_ollama_show(show: Mapping[str, Any], source: OllamaModel | ShowJsonFile | str = "ollama") -> ModelSpec:
    """From an ``/api/show`` response requested with ``"verbose": true``; a string names the Ollama model."""
    if isinstance(source, str):
        source = OllamaModel(source)
    name = source.ref
    model_info = show.get("model_info")
    if not isinstance(model_info, Mapping) or not model_info:
        raise ModelSourceError(f"ollama:{name}: /api/show returned no model_info (ask with \"verbose\": true)")
    raw_tensors = show.get("tensors") or []
    if not raw_tensors:
        raise ModelSourceError(f"ollama:{name}: /api/show returned no tensors (ask with \"verbose\": true)")
    try:
        tensors = [Tensor(str(t["name"]), type_by_name(str(t["type"])),
                          tuple(int(checked_number(d, integer=True, lo=1, hi=2**40)) for d in t["shape"]))
                   for t in raw_tensors]
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelSourceError(f"ollama:{name}: malformed tensor entry in /api/show: {exc}") from None
    return spec_from_metadata(model_info, tensors, name=name, source=source, file_size=None)
