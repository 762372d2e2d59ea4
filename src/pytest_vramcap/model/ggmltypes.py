"""Byte sizes of ggml tensor types, taken from the `gguf` package's own table.

llama.cpp allocates ``ggml_nbytes`` per tensor: rows of ``ne0`` elements packed
in blocks, times the other dimensions. We never estimate from bits per weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ..errors import ConfigError

__all__ = ["GGMLType", "is_quantized", "row_bytes", "tensor_nbytes", "type_by_name"]

GGMLType = GGMLQuantizationType


def type_by_name(name: str) -> GGMLType:
    """Map ``"q8_0"`` / ``"Q4_K"`` / ``"f16"`` to the ggml type."""
    try:
        return GGMLQuantizationType[name.upper()]
    except KeyError:
        raise ConfigError(f"unknown ggml type {name!r}") from None


def row_bytes(ggml_type: GGMLType, n_elements: int) -> int:
    """Bytes of one row of ``n_elements`` (``ggml_row_size``)."""
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    if n_elements % block_size:
        raise ConfigError(f"a row of {n_elements} elements does not divide into {ggml_type.name} blocks of "
                          f"{block_size}")
    return n_elements // block_size * type_size


def tensor_nbytes(ggml_type: GGMLType, shape: Iterable[int]) -> int:
    """``ggml_nbytes`` for a contiguous tensor; ``shape`` is in ggml order (ne0 first)."""
    dims = list(shape)
    return row_bytes(ggml_type, dims[0]) * math.prod(dims[1:])


def is_quantized(ggml_type: GGMLType) -> bool:
    """True for block-quantized types (what CUDA pads to 512-element rows)."""
    return GGML_QUANT_SIZES[ggml_type][0] > 1
