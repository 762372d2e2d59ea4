"""Stage 1, the model: what the memory model needs to know about a model, from any source.

    source.py       --model as a typed value (GGUF file, shape:mix, ollama:NAME, /api/show JSON)
    loader.py       a source to its ModelSpec: the one dispatch over the readers below
    spec.py         ModelSpec, Tensor, LayerCache
    metadata.py     GGUF-style keys -> ModelSpec (shared by every source)
    gguf_header.py  a GGUF header through the `gguf` package (no tensor data read)
    shapes.py       known shapes and their tensor layout
    quantmix.py     llama-quantize's per-tensor types for Q4_K_M, Q8_0...
    from_shape.py   a shape + mix -> GGUF metadata and typed tensors
    ollama_show.py  Ollama's /api/show, live or saved
    ollama_store.py Ollama's local model store: the GGUF blob behind a pulled model's name
    ggmltypes.py    ggml byte sizes
    synth.py        synthetic GGUF files llama-server can load
    materialize.py  the GGUF file an engine serves for a spec
"""

from __future__ import annotations

from .from_shape import shape_metadata, spec_from_shape
from .gguf_header import spec_from_gguf
from .loader import load_model
from .materialize import default_models_dir, materialize_model
from .metadata import spec_from_metadata
from .ollama_show import spec_from_ollama_show
from .source import GgufFile, ModelSource, OllamaModel, ShapeSource, ShowJsonFile, parse_model_source
from .spec import LayerCache, ModelSpec, Tensor
from .synth import write_gguf, write_sparse_gguf

__all__ = [
    "GgufFile",
    "LayerCache",
    "ModelSource",
    "ModelSpec",
    "OllamaModel",
    "ShapeSource",
    "ShowJsonFile",
    "Tensor",
    "default_models_dir",
    "load_model",
    "materialize_model",
    "parse_model_source",
    "shape_metadata",
    "spec_from_gguf",
    "spec_from_metadata",
    "spec_from_ollama_show",
    "spec_from_shape",
    "write_gguf",
    "write_sparse_gguf",
]
