"""A ModelSpec, and the GGUF metadata behind it, for a known shape in a quantization mix.

The synthetic writer (:mod:`.synth`) uses the same metadata and typed tensors,
so a planned shape and a written file agree to the byte.
"""

from __future__ import annotations

from typing import Any

from .metadata import spec_from_metadata
from .quantmix import assign_types, mix_file_type, normalise_mix
from .shapes import Shape, get_shape, tensor_layout
from .source import ShapeSource
from .spec import ModelSpec, Tensor

__all__ = ["shape_metadata", "spec_from_shape"]


def shape_metadata(shape: Shape | str, mix: str) -> tuple[dict[str, Any], list[Tensor]]:
    """GGUF metadata and typed tensor infos of a known shape in a quantization mix."""
    if isinstance(shape, str):
        shape = get_shape(shape)
    layout = tensor_layout(shape)
    types = assign_types(shape, layout, mix)
    tensors = [Tensor(t.name, ggml_type, t.dims) for t, ggml_type in zip(layout, types, strict=True)]
    arch = shape.arch
    kv: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": shape.name,
        "general.file_type": int(mix_file_type(mix)),
        f"{arch}.context_length": shape.n_ctx_train,
        f"{arch}.embedding_length": shape.n_embd,
        f"{arch}.block_count": shape.n_layer,
        f"{arch}.attention.head_count": shape.n_head,
        f"{arch}.attention.head_count_kv": shape.n_head_kv,
        f"{arch}.attention.key_length": shape.head_dim,
        f"{arch}.attention.value_length": shape.head_dim,
        f"{arch}.rope.dimension_count": shape.head_dim,
        f"{arch}.vocab_size": shape.n_vocab,
        # Needed to load, irrelevant to memory.
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.rope.freq_base": 1_000_000.0,
    }
    if shape.n_ff:
        kv[f"{arch}.feed_forward_length"] = shape.n_ff
    if shape.pooling:
        kv[f"{arch}.pooling_type"] = shape.pooling
    if shape.n_swa:
        kv[f"{arch}.attention.sliding_window"] = shape.n_swa
    if arch == "nomic-bert":  # what llama.cpp reads to load it (a LayerNorm encoder, rope base 1000)
        kv[f"{arch}.attention.layer_norm_epsilon"] = 1e-12
        kv[f"{arch}.attention.causal"] = False
        kv[f"{arch}.rope.freq_base"] = 1000.0
        kv["tokenizer.ggml.token_type_count"] = 2
    if shape.n_expert:
        kv[f"{arch}.expert_count"] = shape.n_expert
        kv[f"{arch}.expert_used_count"] = shape.n_expert_used
        kv[f"{arch}.expert_feed_forward_length"] = shape.n_ff_exp
    return kv, tensors


def spec_from_shape(shape_name: str, mix: str = "Q4_K_M") -> ModelSpec:
    mix = normalise_mix(mix)
    shape = get_shape(shape_name)
    kv, tensors = shape_metadata(shape, mix)
    return spec_from_metadata(kv, tensors, name=f"{shape.name}:{mix}", source=ShapeSource(shape.name, mix),
                              file_size=None)
