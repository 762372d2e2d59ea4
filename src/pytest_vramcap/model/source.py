"""Where a model comes from: a typed value instead of ``"shape:"`` / ``"ollama:"`` strings.

``--model`` accepts four spellings, parsed once by :func:`parse_model_source`:

* a ``.gguf`` path (or any existing file) -> :class:`GgufFile`
* an Ollama ``/api/show`` JSON file        -> :class:`ShowJsonFile`
* ``ollama:NAME``                          -> :class:`OllamaModel`
* a known shape, with a mix or not         -> :class:`ShapeSource` (``qwen2.5-14b:Q4_K_M``)

Values only: :mod:`.loader` turns a source into a ``ModelSpec`` (the readers import these values, so
this module imports none of them).

``str(source)`` is the canonical spelling that reports record; ``source.ref`` is
what a rendered config names (the file, the Ollama model, or the file that
``vramcap synth`` writes for a shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..defaults import DEFAULT_MIX
from ..errors import ModelSourceError

__all__ = [
    "GgufFile",
    "ModelSource",
    "OllamaModel",
    "ShapeSource",
    "ShowJsonFile",
    "parse_model_source",
]


@dataclass(frozen=True)
class GgufFile:
    path: Path

    def __str__(self) -> str:
        return str(self.path)

    @property
    def ref(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class ShowJsonFile:
    """A saved ``/api/show`` answer; its stem names the Ollama model it describes."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    @property
    def ref(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class ShapeSource:
    """A registered shape (canonical name) in a normalised quantization mix."""

    shape: str
    mix: str

    def __str__(self) -> str:
        return f"shape:{self.shape}:{self.mix}"

    @property
    def ref(self) -> str:
        return f"{self.shape}-{self.mix}.gguf"


@dataclass(frozen=True)
class OllamaModel:
    """A model a running Ollama serves; ``url`` None means ``$OLLAMA_HOST`` or the default address."""

    name: str
    url: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ModelSourceError("ollama: needs a model name, like ollama:qwen2.5:14b")

    def __str__(self) -> str:
        return f"ollama:{self.name}"

    @property
    def ref(self) -> str:
        return self.name


ModelSource = Union[GgufFile, ShowJsonFile, ShapeSource, OllamaModel]


def parse_model_source(text: str, *, quant: str | None = None, ollama_url: str | None = None) -> ModelSource:
    """Resolve what the user typed for ``--model`` (and ``--quant``, ``--ollama-url``)."""
    from .quantmix import normalise_mix
    from .shapes import get_shape

    if not text or not text.strip():
        raise ModelSourceError("empty --model: give a .gguf path, a shape name like qwen2.5-14b, or ollama:NAME")
    text = text.strip()
    if text.startswith("ollama:"):
        return OllamaModel(text.removeprefix("ollama:"), ollama_url)
    path = Path(text)
    try:
        is_file = path.suffix.lower() == ".gguf" or path.exists()
    except OSError as exc:  # a name too long for the file system, a path through a file...
        raise ModelSourceError(f"--model {text[:80]!r}: {exc.strerror or exc}") from None
    if is_file:
        return ShowJsonFile(path) if path.suffix.lower() == ".json" else GgufFile(path)
    shape_name, _, mix = text.partition(":")
    if quant and mix and normalise_mix(quant) != normalise_mix(mix):
        raise ModelSourceError(f"--model {text!r} names {mix} but --quant says {quant}")
    return ShapeSource(get_shape(shape_name).name, normalise_mix(mix or quant or DEFAULT_MIX))
