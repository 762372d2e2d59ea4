"""Turning a planned model into a file llama-server can load."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..defaults import MIB
from ..errors import ModelSourceError
from .source import GgufFile, ShapeSource
from .spec import ModelSpec

__all__ = ["default_models_dir", "materialize_model"]


def default_models_dir() -> Path:
    """``$VRAMCAP_MODELS_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, under ``pytest-vramcap/models``."""
    explicit = os.environ.get("VRAMCAP_MODELS_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-vramcap" / "models"


def materialize_model(spec: ModelSpec, models_dir: str | Path | None = None,
                      announce: Callable[[str], None] | None = None) -> Path:
    """The GGUF to serve: the file itself, or a synthetic one for a shape (written once, then reused)."""
    source = spec.source
    if isinstance(source, GgufFile):
        return source.path
    if not isinstance(source, ShapeSource):
        raise ModelSourceError(f"{source}: an Ollama model is served by Ollama, not by the embedded engine")
    from .shapes import get_shape
    from .synth import write_gguf
    from .tokenizer import tokenizer_label

    # The tokenizer is in the name: a file cached before synthesized files carried real tokenizers is not reused.
    tokenizer = tokenizer_label(get_shape(source.shape))
    path = Path(models_dir or default_models_dir()) / f"{Path(source.ref).stem}.{tokenizer}.gguf"
    if not path.exists():
        if announce:
            announce(f"vramcap: synthesizing {spec.name} ({spec.weights_bytes / MIB:,.0f} MiB of random weights, "
                     f"{tokenizer} tokenizer) -> {path}")
        write_gguf(source.shape, source.mix, path, weights="random", progress=True)
    return path
