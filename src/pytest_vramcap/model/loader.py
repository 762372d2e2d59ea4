"""From a :mod:`.source` value to the :class:`~.spec.ModelSpec` the planner needs: one dispatch over the readers.

    GgufFile      -> gguf_header (the header through ``gguf``; no tensor data read)
    ShapeSource   -> from_shape (a registered shape in a quantization mix)
    ShowJsonFile  -> ollama_show (a saved ``/api/show`` answer)
    OllamaModel   -> ollama_show from a running Ollama, else the GGUF in Ollama's local store

The readers are imported on first use: ``gguf`` and numpy load only when a GGUF is read.
"""

from __future__ import annotations

from ..errors import ModelSourceError, OllamaUnreachable
from .source import GgufFile, ModelSource, OllamaModel, ShapeSource, ShowJsonFile, parse_model_source
from .spec import ModelSpec

__all__ = ["load_model"]

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
