"""Synthetic GGUF files shaped like real models.

The header (metadata, byte-level SPM vocabulary, tensor infos) is written with
the `gguf` package's GGUFWriter; the tensor data region is left as a hole and
the file truncated to its exact size, so a 9 GB "Qwen2.5-14B Q4_K_M" takes
milliseconds and no disk. That is enough for planning and header tests; writing
loadable weights is the engine's job (a later module).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .modelspec import Tensor, shape_metadata
from .shapes import get_shape

__all__ = ["write_sparse_gguf", "byte_vocab"]

ALIGNMENT = 32  # GGUF default (general.alignment)


def byte_vocab(n_vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    """``<unk>``, ``<s>``, ``</s>``, 256 ``<0xNN>`` byte tokens, then ordinary filler tokens."""
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    tokens += [f"tok{i}".encode() for i in range(n_vocab - len(tokens))]
    # llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
    types = [2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259)
    return tokens[:n_vocab], [0.0] * n_vocab, types[:n_vocab]


def _ggml_bytes_shape(tensor: Tensor) -> tuple[int, ...]:
    """GGUFWriter takes raw data shapes in numpy order with the row in bytes."""
    row = tensor.nbytes // max(1, int(np.prod(tensor.dims[1:])))
    return (*reversed(tensor.dims[1:]), row)


def write_sparse_gguf(shape_name: str, mix: str, path: str | Path, *, layers: int | None = None) -> Path:
    """Write a header-complete GGUF whose data region is a sparse hole."""
    import gguf

    shape = get_shape(shape_name)
    if layers is not None:
        shape = replace(shape, n_layer=layers)
    kv, tensors = shape_metadata(shape, mix)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), kv["general.architecture"])
    for key, value in kv.items():
        if key == "general.architecture":
            continue
        if isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_uint32(key, int(value))
    tokens, scores, types = byte_vocab(shape.n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    data_size = 0
    for tensor in tensors:
        writer.add_tensor_info(tensor.name, _ggml_bytes_shape(tensor), np.dtype(np.uint8), tensor.nbytes,
                               raw_dtype=tensor.ggml_type)
        data_size += -(-tensor.nbytes // ALIGNMENT) * ALIGNMENT
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    os.truncate(path, -(-header // ALIGNMENT) * ALIGNMENT + data_size)
    return path

