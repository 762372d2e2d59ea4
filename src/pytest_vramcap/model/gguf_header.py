"""A ModelSpec from a GGUF file's header and tensor infos, read through the `gguf` package.

No tensor data is touched: planning a 9 GB file reads a few MB (docs/benchmarks.md).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFReader, GGUFValueType

from ..errors import ModelSourceError
from .ggmltypes import GGMLType
from .metadata import spec_from_metadata
from .source import GgufFile
from .spec import ModelSpec, Tensor

__all__ = ["MAX_ARRAY", "MAX_KV", "MAX_TENSORS", "MetadataValue", "read_metadata", "spec_from_gguf"]

# Bounds on what a header may declare. gguf's reader loops over declared counts,
# and a sparse file's zeros parse as endless empty entries: 2^40 tensors on a
# small file walked for minutes. Real files stay below these: old MoE GGUFs with
# one tensor per expert reach ~29k tensors, the largest vocabularies ~260k tokens.
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 16
MAX_ARRAY = 1 << 22
# The fewest bytes one entry can take: a KV is a u64 key length, a u32 type and a
# one-byte value; a tensor info a u64 name length, u32 n_dims, u32 type, u64 offset.
_MIN_KV_BYTES = 13
_MIN_TENSOR_INFO_BYTES = 24


class _HeaderReader(GGUFReader):
    """A GGUFReader that refuses impossible counts and skips over large metadata arrays.

    Counts are checked against the bounds above and against the bytes the file
    has left before gguf's loops run. gguf's reader builds one numpy view per
    array element: seconds for a Qwen tokenizer (152k tokens, 151k merges). We
    only need those arrays' lengths, so this subclass steps over string arrays
    with their length prefixes and reads numeric arrays in one view. Everything
    else is gguf's own parsing. With ``keep_strings`` the walk also keeps each
    string's bytes (a tokenizer copied into a synthesized file): 0.1 s for the
    Qwen vocabulary where the stock reader takes 6 s.
    """

    def __init__(self, path: str | Path, keep_strings: bool = False) -> None:
        self._keep_strings = keep_strings
        super().__init__(path)

    def _check_count(self, what: str, count: int, limit: int, offs: int, min_bytes: int) -> None:
        left = len(self.data) - offs
        if count > limit or count * min_bytes > left:
            raise ValueError(f"the header declares {count:,} {what}, more than a GGUF file holds "
                             f"(limit {limit:,}; {left:,} bytes left)")

    def _build_fields(self, offs: int, count: int) -> int:
        self._check_count("metadata keys", int(count), MAX_KV, offs, _MIN_KV_BYTES)
        return super()._build_fields(offs, count)

    def _build_tensor_info(self, offs: int, count: int) -> tuple[int, list[Any]]:
        self._check_count("tensors", int(count), MAX_TENSORS, offs, _MIN_TENSOR_INFO_BYTES)
        self._tensor_names: set[str] = set()
        return super()._build_tensor_info(offs, count)

    def _get_tensor_info_field(self, orig_offs: int) -> Any:
        # gguf (like llama.cpp) refuses duplicate names, but only after reading every
        # entry; refusing at the first one stops a walk through zeros at entry two.
        field = super()._get_tensor_info_field(orig_offs)
        if field.name in self._tensor_names:
            raise ValueError(f"duplicate tensor name {field.name[:60]!r} at offset {orig_offs}")
        self._tensor_names.add(field.name)
        return field

    @property
    def _length_format(self) -> str:
        host_little = sys.byteorder == "little"
        return "<Q" if host_little == (self.byte_order == "I") else ">Q"

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> tuple[int, list[Any], list[int], list[Any]]:
        import numpy as np

        if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        raw_itype = self._get(orig_offs, np.uint32)
        alen = self._get(orig_offs + 4, np.uint64)
        offs = orig_offs + 12
        itype = GGUFValueType(int(raw_itype[0]))
        count = int(alen[0])
        self._check_count("array elements", count, MAX_ARRAY, offs, 1)
        if itype == GGUFValueType.ARRAY:
            raise ValueError("nested arrays (llama.cpp does not read them either)")
        if itype == GGUFValueType.STRING:
            # Walk the u64 length prefixes with struct: ~0.1 us per string.
            view, fmt, end = self.data.data, self._length_format, len(self.data)
            strings: list[bytes] = []
            for _ in range(count):
                if offs + 8 > end:
                    raise ValueError("string array runs past the end of the file")
                length = struct.unpack_from(fmt, view, offs)[0]
                if self._keep_strings:
                    strings.append(bytes(view[offs + 8:offs + 8 + length]))
                offs += 8 + length
            if offs > end:
                raise ValueError("string array runs past the end of the file")
            # Kept strings ride in the field's parts (gguf skips summing parts' sizes for KV fields).
            return (offs - orig_offs, [raw_itype, alen, *strings], list(range(2, 2 + len(strings))),
                    [GGUFValueType.ARRAY, itype])
        nptype = self.gguf_scalar_to_np.get(itype)
        if nptype is None:
            return super()._get_field_parts(orig_offs, raw_type)
        values = self._get(offs, nptype, count)
        if len(values) != count:
            raise ValueError("array runs past the end of the file")
        return 12 + int(values.nbytes), [raw_itype, alen, values], [2], [GGUFValueType.ARRAY, itype]


def _field_value(field: Any) -> Any:
    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        if types[-1] == GGUFValueType.STRING:
            return int(field.parts[1][0])  # only the length is kept
        return field.parts[field.data[0]].tolist() if field.data else []
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8", errors="replace")
    return field.parts[-1].tolist()[0]


@dataclass(frozen=True)
class MetadataValue:
    """One metadata key as stored: string arrays as the strings' bytes, numeric arrays as lists."""

    key: str
    value: Any
    vtype: GGUFValueType
    sub_type: GGUFValueType | None = None


def read_metadata(path: str | Path, prefix: str = "") -> list[MetadataValue]:
    """The metadata keys of a GGUF file that start with ``prefix``, values as written (no tensor data read)."""
    reader = _HeaderReader(path, keep_strings=True)
    values = []
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or not name.startswith(prefix) or not field.types:
            continue
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            sub_type = field.types[-1]
            items = [field.parts[i] for i in field.data] if sub_type == GGUFValueType.STRING else \
                (field.parts[field.data[0]].tolist() if field.data else [])
            values.append(MetadataValue(name, items, vtype, sub_type))
        elif vtype == GGUFValueType.STRING:
            values.append(MetadataValue(name, bytes(field.parts[-1]).decode("utf-8"), vtype))
        else:
            values.append(MetadataValue(name, field.parts[-1].tolist()[0], vtype))
    return values


def spec_from_gguf(path: str | Path) -> ModelSpec:
    """Read a GGUF header and tensor infos; no tensor data is touched."""
    path = Path(path)
    try:
        if not path.exists():
            raise ModelSourceError(f"model file {str(path)[:200]!r} does not exist")
        if not path.is_file():
            raise ModelSourceError(f"model path {str(path)[:200]!r} is not a file")
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:  # unreadable, a name too long, a /proc file that refuses reads
        raise ModelSourceError(f"model file {str(path)[:200]!r} cannot be read: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise ModelSourceError(f"{str(path)!r} is not a GGUF file (no GGUF magic at the start)")
    try:
        reader = _HeaderReader(path)
        kv = {name: _field_value(field) for name, field in reader.fields.items() if not name.startswith("GGUF.")}
        tensors = [
            Tensor(t.name, GGMLType(int(t.tensor_type)), tuple(int(d) for d in t.shape))
            for t in reader.tensors
        ]
    except Exception as exc:  # gguf raises ValueError, KeyError, IndexError... on damaged headers
        raise ModelSourceError(f"{str(path)!r} is not a readable GGUF file (truncated or corrupt header: {exc})") \
            from None
    if not tensors:
        raise ModelSourceError(f"{str(path)!r} has no tensors")
    name = kv.get("general.name") or path.stem
    return spec_from_metadata(kv, tensors, name=str(name), source=GgufFile(path), file_size=path.stat().st_size)
