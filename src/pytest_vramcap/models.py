"""Turning a planned model into a file llama-server can load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .errors import ModelSourceError
from .modelspec import ModelSpec

__all__ = ["materialize_model", "default_models_dir"]


def default_models_dir() -> Path:
    base = os.environ.get("VRAMCAP_MODELS_DIR") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / ("" if os.environ.get("VRAMCAP_MODELS_DIR") else "pytest-vramcap/models")


def materialize_model(spec: ModelSpec, models_dir: str | Path | None = None,
                      announce: Callable[[str], None] | None = None) -> Path:
    """The GGUF to serve: the file itself, or a synthetic one for a shape (written once, then reused)."""
    if spec.source.startswith("ollama:"):
        raise ModelSourceError(f"{spec.source}: an Ollama model is served by Ollama, not by the embedded engine")
    if not spec.source.startswith("shape:"):
        return Path(spec.source)
    from .synth import write_gguf

    _, shape, mix = spec.source.split(":")
    path = Path(models_dir or default_models_dir()) / spec.model_ref
    if not path.exists():
        if announce:
            announce(f"vramcap: synthesizing {spec.name} ({spec.weights_bytes / 2**20:,.0f} MiB of random weights) "
                     f"-> {path}")
        write_gguf(shape, mix, path, weights="random", progress=True)
    return path
