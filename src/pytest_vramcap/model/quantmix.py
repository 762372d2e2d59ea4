"""llama.cpp's quantization mixes, tensor by tensor.

A "Q4_K_M" file is not Q4_K throughout: ``llama-quantize`` picks a type per
tensor (``llama_tensor_get_type_impl`` in src/llama-quant.cpp of the vendored
llama.cpp). This module reproduces those rules for the mixes people actually
download, so a shape name gives the same bytes as the real file.
"""

from __future__ import annotations

from collections.abc import Sequence

from gguf import GGML_QUANT_SIZES, LlamaFileType

from ..errors import ConfigError
from .ggmltypes import GGMLType
from .shapes import Shape, TensorDef

__all__ = ["MIXES", "assign_types", "mix_file_type", "normalise_mix"]

T = GGMLType

# mix name -> (llama_ftype, default type of quantizable tensors)
MIXES: dict[str, tuple[LlamaFileType, GGMLType]] = {
    "F16": (LlamaFileType.MOSTLY_F16, T.F16),
    "Q8_0": (LlamaFileType.MOSTLY_Q8_0, T.Q8_0),
    "Q6_K": (LlamaFileType.MOSTLY_Q6_K, T.Q6_K),
    "Q5_K_M": (LlamaFileType.MOSTLY_Q5_K_M, T.Q5_K),
    "Q4_K_M": (LlamaFileType.MOSTLY_Q4_K_M, T.Q4_K),
    "Q4_0": (LlamaFileType.MOSTLY_Q4_0, T.Q4_0),
    "MXFP4_MOE": (LlamaFileType.MOSTLY_MXFP4_MOE, T.MXFP4),
}

# When ne0 does not divide into the target's blocks (tensor_type_fallback).
_FALLBACK: dict[GGMLType, GGMLType] = {T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}


def normalise_mix(name: str) -> str:
    key = name.strip().upper().replace("-", "_")
    if key not in MIXES:
        raise ConfigError(f"unknown quantization {name!r}: use one of {', '.join(MIXES)}")
    return key


def mix_file_type(mix: str) -> LlamaFileType:
    return MIXES[normalise_mix(mix)][0]


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _fallback(target: GGMLType, ncols: int) -> GGMLType:
    block = GGML_QUANT_SIZES[target][0]
    if ncols % block == 0:
        return target
    chosen = _FALLBACK.get(target, target)
    return chosen if ncols % GGML_QUANT_SIZES[chosen][0] == 0 else T.F16


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for part, category in (
        ("attn_qkv.weight", "attn_v"),  # llama.cpp treats a fused QKV as attn_v
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_output.weight", "attn_output"),
        ("ffn_down", "ffn_down"),
    ):
        if part in name:
            return category
    return "other"


def _k_mix_type(mix: str, default: GGMLType, shape: Shape, tensor: TensorDef, category: str, i_attn_v: int) -> GGMLType:
    """Q4_K_M / Q5_K_M rules for one quantizable tensor."""
    n_attn_v = shape.n_layer
    if category == "attn_v":
        chosen = T.Q6_K if _use_more_bits(i_attn_v, n_attn_v) else default
        if shape.n_layer == 80 and shape.arch in ("llama", "qwen2") and chosen in (T.Q3_K, T.Q4_K):
            chosen = T.Q5_K  # LLM_TYPE_70B
        if shape.n_expert == 8:
            chosen = T.Q8_0
        return chosen
    if category == "attn_k" and shape.n_expert == 8:
        return T.Q8_0
    if category == "ffn_down":
        assert tensor.layer is not None
        return T.Q6_K if _use_more_bits(tensor.layer, shape.n_layer) else default
    if category == "attn_output" and shape.n_expert == 8 and mix == "Q4_K_M":
        return T.Q5_K
    return default


def assign_types(shape: Shape, tensors: Sequence[TensorDef], mix: str) -> list[GGMLType]:
    """The ggml type of each tensor of ``shape`` in a ``mix`` file."""
    mix = normalise_mix(mix)
    _, default = MIXES[mix]
    types: list[GGMLType] = []
    i_attn_v = 0
    for tensor in tensors:
        if not tensor.quantizable:
            types.append(T.F32)
            continue
        category = _category(tensor.name)
        if category == "token_embd" and shape.tied_embeddings:
            category = "output"  # the shared matrix is quantized as the output
        ncols = tensor.dims[0]
        if mix == "F16":
            types.append(T.F16)
            continue
        if category == "output":
            block = GGML_QUANT_SIZES[default][0]
            chosen = T.Q8_0 if mix == "MXFP4_MOE" or default == T.Q8_0 or ncols % block else T.Q6_K
        elif mix == "MXFP4_MOE":
            chosen = T.MXFP4 if len(tensor.dims) == 3 else T.Q8_0
        elif mix in ("Q4_K_M", "Q5_K_M") and category != "token_embd":
            chosen = _k_mix_type(mix, default, shape, tensor, category, i_attn_v)
        else:
            chosen = default
        if category == "attn_v":
            i_attn_v += 1
        types.append(_fallback(chosen, ncols))
    return types

