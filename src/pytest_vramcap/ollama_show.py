"""Fetch a model's metadata from a running Ollama (``POST /api/show``)."""

from __future__ import annotations

import os
from typing import Any

from .errors import ModelSourceError
from .parsers import base_url

__all__ = ["fetch_show", "DEFAULT_OLLAMA_URL"]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


def fetch_show(model: str, url: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """``/api/show`` with ``verbose: true``; without it Ollama drops arrays and tensors."""
    import httpx

    if not model:
        raise ModelSourceError("ollama: needs a model name, like ollama:qwen2.5:14b")
    base = base_url(url or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_URL)
    try:
        response = httpx.post(f"{base}/api/show", json={"model": model, "verbose": True}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ModelSourceError(f"ollama:{model}: cannot reach Ollama at {base}: {exc}") from None
    if response.status_code == 404:
        raise ModelSourceError(f"ollama:{model}: model not found on {base} (ollama pull {model})")
    if response.status_code != 200:
        raise ModelSourceError(f"ollama:{model}: /api/show answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = response.json()
    except ValueError:
        raise ModelSourceError(f"ollama:{model}: /api/show did not return JSON") from None
    if not isinstance(body, dict):
        raise ModelSourceError(f"ollama:{model}: /api/show returned {type(body).__name__}, not an object")
    return body
