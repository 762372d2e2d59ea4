"""ModelSpec: what the memory model needs to know about a model.

Three sources give the same structure:

* a GGUF file, read through the `gguf` package (header and tensor infos only);
* a known shape plus a quantization mix (``qwen2.5-14b:Q4_K_M``), laid out by
  :mod:`.shapes` and typed by :mod:`.quantmix`;
* Ollama's ``/api/show`` JSON with ``"verbose": true`` (``model_info`` holds the
  GGUF keys, ``tensors`` the tensor infos).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from gguf import GGUFValueType

from .errors import ModelSourceError
from .ggmltypes import GGMLType, is_quantized, row_bytes, tensor_nbytes
from .quantmix import assign_types, normalise_mix
from .shapes import SWA_PATTERN, Shape, get_shape, swa_layers, tensor_layout

__all__ = ["Tensor", "LayerCache", "ModelSpec", "load_model", "spec_from_shape", "spec_from_gguf", "spec_from_ollama_show"]

# CUDA pads the last row of quantized matrices to a multiple of this
# (MATRIX_ROW_PADDING, ggml-cuda/common.cuh) and allocates in 128-byte steps.
CUDA_ROW_PADDING = 512
CUDA_ALIGNMENT = 128

# Architectures whose KV layout we model; anything else is refused rather than
# guessed. Names as in GGUF ``general.architecture``.
SUPPORTED_ARCHS = frozenset(
    {"llama", "qwen2", "qwen3", "qwen3moe", "qwen2moe", "gemma2", "gemma3", "phi3", "gpt-oss", "mistral3",
     "deepseek2", "mamba", "mamba2", "granite", "olmo2", "cohere2", "starcoder2", "internlm2", "exaone"}
)
_RECURRENT_ARCHS = frozenset({"mamba", "mamba2"})
_ARCH_ALIASES = {"gptoss": "gpt-oss"}

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
    source: str
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
        if self.source.startswith("shape:"):
            return self.name.replace(":", "-") + ".gguf"
        return self.source.removeprefix("ollama:")

    @property
    def tied_embeddings(self) -> bool:
        return not any(tensor.name == "output.weight" for tensor in self.tensors)

    @property
    def weights_bytes(self) -> int:
        return sum(tensor.nbytes for tensor in self.tensors)

    @property
    def is_mla(self) -> bool:
        return any(layer.k_width and not layer.v_width for layer in self.layers)

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


# --------------------------------------------------------------------------- #
# From GGUF-style key/value metadata (GGUF header or Ollama model_info)
# --------------------------------------------------------------------------- #


def _per_layer(value: Any, n_layer: int, key: str) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != n_layer:
            raise ModelSourceError(f"{key} lists {len(value)} values for {n_layer} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layer


def _spec_from_metadata(
    kv: Mapping[str, Any], tensors: Sequence[Tensor], *, name: str, source: str, file_size: int | None
) -> ModelSpec:
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelSourceError(f"{source}: no general.architecture key: not a llama.cpp model")
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch not in SUPPORTED_ARCHS:
        raise ModelSourceError(
            f"{source}: unknown architecture {arch!r}: the planner models {', '.join(sorted(SUPPORTED_ARCHS))}"
        )
    prefix = str(kv["general.architecture"])  # keys keep the file's own spelling

    def get(key: str, default: Any = None) -> Any:
        return kv.get(f"{prefix}.{key}", default)

    try:
        n_layer = int(get("block_count"))
        n_embd = int(get("embedding_length"))
    except (TypeError, ValueError):
        raise ModelSourceError(f"{source}: missing {prefix}.block_count or {prefix}.embedding_length") from None
    if n_layer <= 0 or n_embd <= 0:
        raise ModelSourceError(f"{source}: block_count and embedding_length must be positive")
    token_embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    n_vocab = int(get("vocab_size", 0) or (token_embd.dims[1] if token_embd else 0))
    n_ctx_train = int(get("context_length", 0) or 4096)
    n_swa = int(get("attention.sliding_window", 0) or 0)
    n_expert = int(get("expert_count", 0) or 0)
    n_expert_used = int(get("expert_used_count", 0) or 0)
    n_ff_dense = get("feed_forward_length", 0)
    n_ff_dense = max(_per_layer(n_ff_dense, n_layer, "feed_forward_length")) if n_ff_dense else 0
    n_ff_exp = int(get("expert_feed_forward_length", 0) or 0)
    n_ff = n_expert_used * n_ff_exp if n_expert and n_ff_exp else n_ff_dense

    if arch in _RECURRENT_ARCHS:
        d_conv, d_inner = int(get("ssm.conv_kernel", 0)), int(get("ssm.inner_size", 0))
        d_state, n_group = int(get("ssm.state_size", 0)), int(get("ssm.group_count", 0) or 0)
        state = (max(d_conv - 1, 0)) * (d_inner + 2 * n_group * d_state) + d_state * d_inner
        layers = tuple(LayerCache(recurrent_floats=state) for _ in range(n_layer))
        n_head = int(get("attention.head_count", 0) or 0)
        head_dim = n_embd // n_head if n_head else 0
    else:
        try:
            n_head_list = _per_layer(get("attention.head_count"), n_layer, "attention.head_count")
            n_head_kv_list = _per_layer(get("attention.head_count_kv", get("attention.head_count")), n_layer,
                                        "attention.head_count_kv")
        except (TypeError, ValueError):
            raise ModelSourceError(f"{source}: missing {prefix}.attention.head_count") from None
        n_head = max(n_head_list)
        if n_head <= 0:
            raise ModelSourceError(f"{source}: attention.head_count must be positive")
        key_length = int(get("attention.key_length", 0) or n_embd // n_head)
        value_length = int(get("attention.value_length", 0) or n_embd // n_head)
        head_dim = int(get("attention.key_length_mla", 0) or key_length)
        # MLA GGUFs (DeepSeek-V2/V3/R1 converted with MLA) cache the compressed
        # latent (kv_lora_rank + rope dims, stored as key_length) as K only.
        mla = arch == "deepseek2" and get("attention.key_length_mla") is not None
        pattern = swa_layers(arch, n_layer, n_swa) if arch in SWA_PATTERN else (False,) * n_layer
        explicit_pattern = get("attention.sliding_window_pattern")
        if isinstance(explicit_pattern, (list, tuple)) and len(explicit_pattern) == n_layer:
            pattern = tuple(bool(v) for v in explicit_pattern)
        layers = tuple(
            LayerCache(
                k_width=key_length * n_head_kv_list[il],
                v_width=0 if mla else value_length * n_head_kv_list[il],
                swa=pattern[il],
            )
            for il in range(n_layer)
        )
    file_type = kv.get("general.file_type")
    return ModelSpec(
        name=name,
        source=source,
        arch=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        head_dim=head_dim,
        n_vocab=n_vocab,
        n_ctx_train=n_ctx_train,
        n_ff=n_ff,
        n_swa=n_swa,
        layers=layers,
        tensors=tuple(tensors),
        file_type=_file_type_name(file_type),
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        file_size=file_size,
        metadata=dict(kv),
    )


def _file_type_name(value: Any) -> str:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        return str(value) if value else ""


# --------------------------------------------------------------------------- #
# GGUF files
# --------------------------------------------------------------------------- #


def _header_reader(path: Path) -> Any:
    """A GGUFReader that skips over large metadata arrays without itemising them.

    gguf's reader builds one numpy view per array element: 7 s for a Qwen
    tokenizer (152k tokens, 151k merges). We only need those arrays' lengths,
    so this subclass steps over string arrays with their length prefixes and
    reads numeric arrays in one view. Everything else is gguf's own parsing.
    """
    import numpy as np
    from gguf import GGUFReader

    class HeaderReader(GGUFReader):
        @property
        def _length_format(self) -> str:
            host_little = sys.byteorder == "little"
            return "<Q" if host_little == (self.byte_order == "I") else ">Q"

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> tuple[int, list[Any], list[int], list[Any]]:
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            alen = self._get(orig_offs + 4, np.uint64)
            offs = orig_offs + 12
            itype = GGUFValueType(int(raw_itype[0]))
            count = int(alen[0])
            if itype == GGUFValueType.STRING:
                # Walk the u64 length prefixes with struct: ~0.1 us per string.
                view, fmt, end = memoryview(self.data), self._length_format, len(self.data)
                for _ in range(count):
                    if offs + 8 > end:
                        raise ValueError("string array runs past the end of the file")
                    offs += 8 + struct.unpack_from(fmt, view, offs)[0]
                if offs > end:
                    raise ValueError("string array runs past the end of the file")
                return offs - orig_offs, [raw_itype, alen], [], [GGUFValueType.ARRAY, itype]
            nptype = self.gguf_scalar_to_np.get(itype)
            if nptype is None:
                return super()._get_field_parts(orig_offs, raw_type)
            values = self._get(offs, nptype, count)
            if len(values) != count:
                raise ValueError("array runs past the end of the file")
            return 12 + int(values.nbytes), [raw_itype, alen, values], [2], [GGUFValueType.ARRAY, itype]

    return HeaderReader(path)


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


def spec_from_gguf(path: str | Path) -> ModelSpec:
    """Read a GGUF header and tensor infos; no tensor data is touched."""
    path = Path(path)
    if not path.exists():
        raise ModelSourceError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise ModelSourceError(f"model path {str(path)!r} is not a file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelSourceError(f"{str(path)!r} is not a GGUF file (no GGUF magic at the start)")
    try:
        reader = _header_reader(path)
        kv = {name: _field_value(field) for name, field in reader.fields.items() if not name.startswith("GGUF.")}
        tensors = [
            Tensor(t.name, GGMLType(int(t.tensor_type)), tuple(int(d) for d in t.shape))
            for t in reader.tensors
        ]
    except ModelSourceError:
        raise
    except Exception as exc:  # gguf raises ValueError, KeyError, IndexError... on damaged headers
        raise ModelSourceError(f"{str(path)!r} is not a readable GGUF file (truncated or corrupt header: {exc})") from None
    if not tensors:
        raise ModelSourceError(f"{str(path)!r} has no tensors")
    name = kv.get("general.name") or path.stem
    return _spec_from_metadata(kv, tensors, name=str(name), source=str(path), file_size=path.stat().st_size)


# --------------------------------------------------------------------------- #
# Known shapes
# --------------------------------------------------------------------------- #


def shape_metadata(shape: Shape | str, mix: str) -> tuple[dict[str, Any], list[Tensor]]:
    """GGUF metadata and typed tensor infos of a known shape in a quantization mix.

    The synthetic writer uses the same pair, so a planned shape and a written
    file agree to the byte.
    """
    from .quantmix import mix_file_type

    if isinstance(shape, str):
        shape = get_shape(shape)
    layout = tensor_layout(shape)
    types = assign_types(shape, layout, mix)
    tensors = [Tensor(t.name, ggml_type, t.dims) for t, ggml_type in zip(layout, types)]
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
    if shape.n_swa:
        kv[f"{arch}.attention.sliding_window"] = shape.n_swa
    if shape.n_expert:
        kv[f"{arch}.expert_count"] = shape.n_expert
        kv[f"{arch}.expert_used_count"] = shape.n_expert_used
        kv[f"{arch}.expert_feed_forward_length"] = shape.n_ff_exp
    return kv, tensors


def spec_from_shape(shape_name: str, mix: str = "Q4_K_M") -> ModelSpec:
    mix = normalise_mix(mix)
    kv, tensors = shape_metadata(shape_name, mix)
    shape = get_shape(shape_name)
    return _spec_from_metadata(kv, tensors, name=f"{shape.name}:{mix}", source=f"shape:{shape.name}:{mix}",
                               file_size=None)


# --------------------------------------------------------------------------- #
# Ollama /api/show
# --------------------------------------------------------------------------- #


def spec_from_ollama_show(show: Mapping[str, Any], name: str = "ollama") -> ModelSpec:
    """From an ``/api/show`` response requested with ``"verbose": true``."""
    model_info = show.get("model_info")
    if not isinstance(model_info, Mapping) or not model_info:
        raise ModelSourceError(f"ollama:{name}: /api/show returned no model_info (ask with \"verbose\": true)")
    raw_tensors = show.get("tensors") or []
    if not raw_tensors:
        raise ModelSourceError(f"ollama:{name}: /api/show returned no tensors (ask with \"verbose\": true)")
    try:
        tensors = [
            Tensor(str(t["name"]), GGMLType[str(t["type"]).upper()], tuple(int(d) for d in t["shape"]))
            for t in raw_tensors
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelSourceError(f"ollama:{name}: malformed tensor entry in /api/show: {exc}") from None
    return _spec_from_metadata(model_info, tensors, name=name, source=f"ollama:{name}", file_size=None)


# --------------------------------------------------------------------------- #
# One entry point
# --------------------------------------------------------------------------- #


def load_model(source: str, *, quant: str | None = None, ollama_url: str | None = None) -> ModelSpec:
    """Resolve ``--model``: a ``.gguf`` path, ``shape[:MIX]``, ``ollama:NAME`` or an ``/api/show`` JSON file."""
    if not source or not source.strip():
        raise ModelSourceError("empty --model: give a .gguf path, a shape name like qwen2.5-14b, or ollama:NAME")
    source = source.strip()
    if source.startswith("ollama:"):
        from .ollama_show import fetch_show

        model = source.removeprefix("ollama:")
        return spec_from_ollama_show(fetch_show(model, ollama_url), name=model)
    path = Path(source)
    if path.suffix.lower() == ".gguf" or path.exists():
        if path.suffix.lower() == ".json":
            try:
                show = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelSourceError(f"{source!r}: not a readable /api/show JSON file: {exc}") from None
            return spec_from_ollama_show(show, name=path.stem)
        return spec_from_gguf(path)
    shape_name, _, mix = source.partition(":")
    if quant and mix and normalise_mix(quant) != normalise_mix(mix):
        raise ModelSourceError(f"--model {source!r} names {mix} but --quant says {quant}")
    return spec_from_shape(shape_name, mix or quant or "Q4_K_M")
