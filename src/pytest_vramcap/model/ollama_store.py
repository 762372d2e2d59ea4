"""Ollama's local model store: the GGUF behind a model name, read without a running Ollama.

``ollama pull`` writes a manifest per name under ``$OLLAMA_MODELS/manifests/<host>/<namespace>/
<model>/<tag>`` and the layers as content-addressed blobs under ``$OLLAMA_MODELS/blobs/sha256-<hex>``;
the layer of media type ``application/vnd.ollama.image.model`` is the GGUF. Name defaults and paths
follow Ollama's own code: types/model/name.go (ParseName, Filepath), manifest/paths.go (Path,
BlobsPath), envconfig/config.go (Models).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["local_model_blob", "manifest_path", "ollama_models_dir"]

_MODEL_LAYER = "application/vnd.ollama.image.model"
_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


def ollama_models_dir() -> Path:
    """``$OLLAMA_MODELS``, else ``~/.ollama/models`` (envconfig.Models)."""
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def manifest_path(name: str, models_dir: Path | None = None) -> Path | None:
    """Where Ollama keeps the manifest of ``name`` (``qwen2.5:14b``, ``user/model``, ``host/ns/model:tag``);
    None for a name Ollama would not accept."""
    rest, tag = name, "latest"
    if rest.rfind(":") > rest.rfind("/"):  # "/" cannot be in a tag, so the last ":" after it starts one
        rest, tag = rest.rsplit(":", 1)
    parts = rest.split("/")
    if len(parts) > 3 or not all(parts) or not tag:
        return None
    host, namespace, model = [*("registry.ollama.ai", "library")[: 3 - len(parts)], *parts]  # ParseName's defaults
    if any(part in (".", "..") or "\\" in part for part in (host, namespace, model, tag)):
        return None
    return (models_dir or ollama_models_dir()) / "manifests" / host / namespace / model / tag


def local_model_blob(name: str, models_dir: Path | None = None) -> Path | None:
    """The GGUF blob of ``name`` in the local store, or None when the store does not have it."""
    directory = models_dir or ollama_models_dir()
    path = manifest_path(name, directory)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None
    except (OSError, ValueError):
        return None
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    for layer in layers if isinstance(layers, list) else []:
        digest = _DIGEST.match(str(layer.get("digest", ""))) if isinstance(layer, dict) else None
        if digest and layer.get("mediaType") == _MODEL_LAYER:
            blob = directory / "blobs" / f"sha256-{digest.group(1)}"
            return blob if blob.is_file() else None
    return None
