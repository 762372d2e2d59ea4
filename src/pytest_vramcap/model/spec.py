"""ModelSpec: what the memory model needs to know about a model, whatever its source."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .ggmltypes import GGMLType, is_quantized, row_bytes, tensor_nbytes
from .source import ModelSource

__all__ = ["CUDA_ALIGNMENT", "CUDA_ROW_PADDING", "LayerCache", "ModelSpec", "Tensor"]

# CUDA pads the last row of quantized matrices to a multiple of this
# (MATRIX_ROW_PADDING, ggml-cuda/common.cuh) and allocates in 128-byte steps.
CUDA_ROW_PADDING = 512
CUDA_ALIGNMENT = 128

_LAYER_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Tensor:
    """A tensor info: name, ggml type and dims (ne0 first)."""

    name: str
    ggml_type: GGMLType
    dims: tuple[int, ...]

    @property
    def layer(self) -> int | None:
        match = _LAYER_RE.match(self.name)
        return int(match.group(1)) if match else None

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.dims)

    @property
    def cuda_nbytes(self) -> int:
        """Bytes in a CUDA buffer: padded rows for quantized types, 128-byte aligned."""
        size = self.nbytes
        ne0 = self.dims[0]
        if is_quantized(self.ggml_type) and ne0 % CUDA_ROW_PADDING:
            size += row_bytes(self.ggml_type, CUDA_ROW_PADDING - ne0 % CUDA_ROW_PADDING)
        return -(-size // CUDA_ALIGNMENT) * CUDA_ALIGNMENT


ENCODER_ARCHS = frozenset({"nomic-bert"})
"""Architectures llama.cpp runs as encoders without memory (src/llama-model.cpp create_memory)."""


@dataclass(frozen=True)
class LayerCache:
    """Per-layer cache geometry: K/V row widths or recurrent state."""

    k_width: int = 0
    """n_embd_k_gqa: K elements per cell (0: no KV in this layer)."""
    v_width: int = 0
    """n_embd_v_gqa: V elements per cell (0 for MLA, which caches K only)."""
    swa: bool = False
    recurrent_floats: int = 0
    """f32 elements of recurrent state per sequence (Mamba: n_embd_r + n_embd_s)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model as the planner sees it."""

    name: str
    source: ModelSource
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    head_dim: int
    n_vocab: int
    n_ctx_train: int
    n_ff: int
    """FFN width a token passes through: dense n_ff, or n_expert_used x expert width."""
    n_swa: int
    layers: tuple[LayerCache, ...]
    tensors: tuple[Tensor, ...]
    file_type: str = ""
    n_expert: int = 0
    n_expert_used: int = 0
    file_size: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def model_ref(self) -> str:
        """What a rendered config names: the file, the Ollama model, or the file `vramcap synth` writes."""
        return self.source.ref

    @property
    def embedding(self) -> bool:
        """An embedding model (its GGUF names a pooling type), which Ollama loads with one slot whatever
        OLLAMA_NUM_PARALLEL says (server/sched.go: "Embedding models should always be loaded with parallel=1")."""
        pooling = self.metadata.get(f"{self.arch}.pooling_type")
        return isinstance(pooling, int) and pooling > 0

    @property
    def encoder_only(self) -> bool:
        """A BERT-style encoder: llama.cpp gives it no KV cache (llama_model::create_memory returns none), its
        attention spans only the micro-batch, and it has no output head."""
        return self.arch in ENCODER_ARCHS

    @property
    def tied_embeddings(self) -> bool:
        """The output head reuses the token embeddings (an encoder has no output head at all)."""
        return not self.encoder_only and not any(tensor.name == "output.weight" for tensor in self.tensors)

    @property
    def weights_bytes(self) -> int:
        return sum(tensor.nbytes for tensor in self.tensors)

    @property
    def has_swa(self) -> bool:
        return any(layer.swa for layer in self.layers)

    def tensor(self, name: str) -> Tensor | None:
        return next((tensor for tensor in self.tensors if tensor.name == name), None)

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.tensors:
            counts[tensor.ggml_type.name] = counts.get(tensor.ggml_type.name, 0) + 1
        return counts
