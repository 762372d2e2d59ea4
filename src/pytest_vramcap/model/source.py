"""Where a model comes from: a typed value instead of ``"shape:"`` / ``"ollama:"`` strings.

``--model`` accepts four spellings, parsed once by :func:`parse_model_source`:

* a ``.gguf`` path (or any existing file) -> :class:`GgufFile`
* an Ollama ``/api/show`` JSON file        -> :class:`ShowJsonFile`
* ``ollama:NAME``                          -> :class:`OllamaModel`
* a known shape, with a mix or not         -> :class:`ShapeSource` (``qwen2.5-14b:Q4_K_M``)

``str(source)`` is the canonical spelling that reports record; ``source.ref`` is
what a rendered config names (the file, the Ollama model, or the file that
``vramcap synth`` writes for a shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..defaults import DEFAULT_MIX
from ..errors import ModelSourceError, OllamaUnreachable

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "GgufFile",
    "ModelSource",
    "OllamaModel",
    "ShapeSource",
    "ShowJsonFile",
    "load_model",
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


def load_model(source: ModelSource | str, *, quant: str | None = None, ollama_url: str | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of a model source (a string is parsed first)."""
    if isinstance(source, str):
        source = parse_model_source(source, quant=quant, ollama_url=ollama_url)
    if isinstance(source, GgufFile):
        from .gguf_header import spec_from_gguf

        return spec_from_gguf(source.path)
    if isinstance(source, ShapeSource):
        from .from_shape import spec_from_shape

        return spec_from_shape(source.shape, source.mix)
    from .ollama_show import read_show_file, spec_from_ollama_show

    if isinstance(source, ShowJsonFile):
        return spec_from_ollama_show(read_show_file(source.path), source=source)
    return _ollama_spec(source)


def _ollama_spec(source: OllamaModel) -> ModelSpec:
    """From a running Ollama's ``/api/show``; when no Ollama answers, from the GGUF in its local store
    (a pulled model can be planned, and served by an ``ollama serve`` we start, with none running)."""
    from dataclasses import replace

    from .gguf_header import spec_from_gguf
    from .ollama_show import fetch_show, spec_from_ollama_show
    from .ollama_store import local_model_blob, ollama_models_dir

    try:
        return spec_from_ollama_show(fetch_show(source.name, source.url), source=source)
    except OllamaUnreachable as exc:
        blob = local_model_blob(source.name)
        if blob is None:
            raise ModelSourceError(f"{exc}; nor is it in the local store {ollama_models_dir()} "
                                   f"($OLLAMA_MODELS)") from None
    return replace(spec_from_gguf(blob), name=source.ref, source=source)
