"""A ModelSpec from GGUF-style key/value metadata: a GGUF header, a shape's keys, or Ollama's ``model_info``.

Every value is checked before it is used: metadata comes from files and servers
we do not control, so a count that is a string, NaN, 1e400 or negative, or a
model llama.cpp could not run (more KV heads than heads, a layer count the
tensors contradict), is refused with one line instead of planned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError, ModelSourceError
from ..parsers import checked_number
from .shapes import SWA_PATTERN, swa_layers
from .source import ModelSource
from .spec import ENCODER_ARCHS, LayerCache, ModelSpec, Tensor

__all__ = ["MAX_COUNT", "MAX_LAYERS", "SUPPORTED_ARCHS", "spec_from_metadata"]

# Architectures whose KV layout we model; anything else is refused rather than
# guessed. Names as in GGUF ``general.architecture``.
SUPPORTED_ARCHS = frozenset(
    {"llama", "qwen2", "qwen3", "qwen3moe", "qwen2moe", "gemma2", "gemma3", "phi3", "gpt-oss", "mistral3",
     "deepseek2", "mamba", "mamba2", "granite", "olmo2", "cohere2", "starcoder2", "internlm2", "exaone",
     *ENCODER_ARCHS}
)
_RECURRENT_ARCHS = frozenset({"mamba", "mamba2"})
_ARCH_ALIASES = {"gptoss": "gpt-oss"}  # Ollama's spelling

MAX_LAYERS = 4096
"""No released model comes near (405B dense has 126): more is a damaged header, not a model."""
MAX_COUNT = 2**31 - 1
"""llama.cpp keeps hyper-parameters in 32-bit integers."""
_GGML_MAX_DIMS = 4


class _Keys:
    """Typed, checked access to ``{arch}.*`` keys; every problem is one ModelSourceError line."""

    def __init__(self, kv: Mapping[str, Any], prefix: str, source: ModelSource) -> None:
        self.kv, self.prefix, self.source = kv, prefix, source

    def raw(self, key: str) -> Any:
        return self.kv.get(f"{self.prefix}.{key}")

    def fail(self, message: str) -> ModelSourceError:
        return ModelSourceError(f"{self.source}: {message}")

    def _integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        try:
            return int(checked_number(value, integer=True, lo=lo, hi=hi))
        except ValueError as exc:
            raise self.fail(f"{self.prefix}.{key} {exc}") from None

    def count(self, key: str, default: int | None = None, *, lo: int = 0, hi: int = MAX_COUNT) -> int:
        """A scalar count; a missing key (or 0 where 0 means unset) takes ``default``."""
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.fail(f"missing {self.prefix}.{key}")
            return default
        return self._integer(value, key, lo, hi)

    def per_layer(self, key: str, n_layer: int, *, lo: int = 0, hi: int = MAX_COUNT,
                  fallback: str | None = None) -> list[int]:
        """A count given once for all layers or as one value per layer."""
        value = self.raw(key)
        if value is None and fallback is not None:
            key, value = fallback, self.raw(fallback)
        if value is None:
            raise self.fail(f"missing {self.prefix}.{key}")
        if isinstance(value, (list, tuple)):
            if len(value) != n_layer:
                raise self.fail(f"{self.prefix}.{key} lists {len(value)} values for {n_layer} layers")
            return [self._integer(v, key, lo, hi) for v in value]
        return [self._integer(value, key, lo, hi)] * n_layer


def _attention_layers(keys: _Keys, arch: str, n_layer: int, n_embd: int,
                      n_swa: int) -> tuple[int, int, tuple[LayerCache, ...]]:
    """(n_head, head_dim, per-layer KV geometry) of an attention model."""
    heads = keys.per_layer("attention.head_count", n_layer, lo=1)
    kv_heads = keys.per_layer("attention.head_count_kv", n_layer, lo=1, fallback="attention.head_count")
    for il, (n_head_il, n_kv_il) in enumerate(zip(heads, kv_heads, strict=True)):
        # ggml_flash_attn_ext (and the plain path) broadcast K/V heads over query heads:
        # llama.cpp needs n_head % n_head_kv == 0 (ggml.h), so more KV heads than heads cannot run.
        if n_head_il % n_kv_il:
            raise keys.fail(f"layer {il}: {n_head_il} attention heads do not divide into {n_kv_il} KV heads")
    n_head = max(heads)
    explicit_k, explicit_v = keys.count("attention.key_length", 0), keys.count("attention.value_length", 0)
    if not (explicit_k and explicit_v) and n_embd % n_head:
        # llama.cpp derives the head size as n_embd / n_head; a remainder means the file's tensors cannot match.
        raise keys.fail(f"embedding length {n_embd} does not divide into {n_head} heads and no key/value length "
                        f"is given")
    key_length = explicit_k or n_embd // n_head
    value_length = explicit_v or n_embd // n_head
    head_dim = keys.count("attention.key_length_mla", 0, lo=0) or key_length
    if min(key_length, value_length, head_dim) < 1:
        raise keys.fail(f"head size is 0 (embedding length {n_embd} for {n_head} heads, no key_length)")
    # MLA GGUFs (DeepSeek-V2/V3/R1 converted with MLA) cache the compressed
    # latent (kv_lora_rank + rope dims, stored as key_length) as K only.
    mla = arch == "deepseek2" and keys.raw("attention.key_length_mla") is not None
    pattern = swa_layers(arch, n_layer, n_swa) if arch in SWA_PATTERN else (False,) * n_layer
    explicit_pattern = keys.raw("attention.sliding_window_pattern")
    if isinstance(explicit_pattern, (list, tuple)) and len(explicit_pattern) == n_layer:
        pattern = tuple(bool(v) for v in explicit_pattern)
    layers = tuple(
        LayerCache(k_width=key_length * kv_heads[il], v_width=0 if mla else value_length * kv_heads[il],
                   swa=pattern[il])
        for il in range(n_layer)
    )
    return n_head, head_dim, layers


def _recurrent_layers(keys: _Keys, n_layer: int, n_embd: int) -> tuple[int, int, tuple[LayerCache, ...]]:
    """(n_head, head_dim, per-layer state) of a Mamba model: conv + SSM state per sequence."""
    d_conv, d_inner = keys.count("ssm.conv_kernel", 0), keys.count("ssm.inner_size", 0)
    d_state, n_group = keys.count("ssm.state_size", 0), keys.count("ssm.group_count", 0)
    state = (max(d_conv - 1, 0)) * (d_inner + 2 * n_group * d_state) + d_state * d_inner
    n_head = keys.count("attention.head_count", 0)
    return n_head, n_embd // n_head if n_head else 0, tuple(LayerCache(recurrent_floats=state) for _ in range(n_layer))


def _check_tensors(tensors: Sequence[Tensor], n_layer: int, source: ModelSource) -> None:
    """Dims llama.cpp could allocate, rows that divide into their blocks, and blocks that match the layer count."""
    for tensor in tensors:
        if not 1 <= len(tensor.dims) <= _GGML_MAX_DIMS or any(dim < 1 or dim > 2**40 for dim in tensor.dims):
            raise ModelSourceError(f"{source}: tensor {tensor.name} has impossible dimensions {list(tensor.dims)}")
        try:
            tensor.nbytes  # noqa: B018 - checks the row divides into the type's blocks
        except ConfigError as exc:
            raise ModelSourceError(f"{source}: tensor {tensor.name}: {exc}") from None
    layers = {tensor.layer for tensor in tensors if tensor.layer is not None}
    if tensors and not layers:
        raise ModelSourceError(f"{source}: no layer tensors (blk.N.*) for its {n_layer} layers")
    if layers and max(layers) + 1 != n_layer:
        raise ModelSourceError(f"{source}: block_count says {n_layer} layers but the tensors are for {max(layers) + 1}")


def _check_kv_tensors(tensors: Sequence[Tensor], layers: Sequence[LayerCache], source: ModelSource) -> None:
    """attn_k / attn_v produce the K / V rows the metadata describes (llama.cpp checks each shape at load)."""
    for tensor in tensors:
        layer = tensor.layer
        kind = tensor.name.rsplit(".", 2)[-2] if layer is not None else ""
        if kind not in ("attn_k", "attn_v") or layer is None or len(tensor.dims) != 2:
            continue
        expected = layers[layer].k_width if kind == "attn_k" else layers[layer].v_width
        if expected and tensor.dims[1] != expected:
            raise ModelSourceError(f"{source}: {tensor.name} has {tensor.dims[1]} outputs but the metadata gives "
                                   f"{expected} (heads x head size)")


def spec_from_metadata(kv: Mapping[str, Any], tensors: Sequence[Tensor], *, name: str, source: ModelSource,
                       file_size: int | None) -> ModelSpec:
    """Read the hyper-parameters the memory model needs from ``{arch}.*`` keys, and check them."""
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelSourceError(f"{source}: no general.architecture key: not a llama.cpp model")
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch not in SUPPORTED_ARCHS:
        raise ModelSourceError(
            f"{source}: unknown architecture {arch[:40]!r}: the planner models {', '.join(sorted(SUPPORTED_ARCHS))}"
        )
    keys = _Keys(kv, str(kv["general.architecture"]), source)  # keys keep the file's own spelling
    file_type = kv.get("general.file_type")
    if file_type is not None and (isinstance(file_type, bool) or not isinstance(file_type, int)):
        # llama.cpp's loader type-checks this key (u32) and refuses the file otherwise.
        raise ModelSourceError(f"{source}: general.file_type must be an integer, got {str(file_type)[:40]!r}")
    n_layer = keys.count("block_count", lo=1, hi=MAX_LAYERS)
    n_embd = keys.count("embedding_length", lo=1)
    _check_tensors(tensors, n_layer, source)
    token_embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    n_vocab = keys.count("vocab_size", 0) or (token_embd.dims[1] if token_embd and len(token_embd.dims) > 1 else 0)
    n_ctx_train = keys.count("context_length", 0) or 4096
    n_swa = keys.count("attention.sliding_window", 0)
    n_expert = keys.count("expert_count", 0)
    n_expert_used = keys.count("expert_used_count", 0, hi=max(n_expert, 0))
    n_ff_dense = max(keys.per_layer("feed_forward_length", n_layer)) if keys.raw("feed_forward_length") else 0
    n_ff_exp = keys.count("expert_feed_forward_length", 0)
    n_ff = n_expert_used * n_ff_exp if n_expert and n_ff_exp else n_ff_dense

    if tensors and token_embd is None:
        raise ModelSourceError(f"{source}: no token_embd.weight tensor (llama.cpp requires one)")
    if tensors and n_vocab < 1:
        raise ModelSourceError(f"{source}: no vocabulary size ({keys.prefix}.vocab_size or token_embd.weight)")
    if arch in _RECURRENT_ARCHS:
        n_head, head_dim, layers = _recurrent_layers(keys, n_layer, n_embd)
    else:
        n_head, head_dim, layers = _attention_layers(keys, arch, n_layer, n_embd, n_swa)
        _check_kv_tensors(tensors, layers, source)
        if arch in ENCODER_ARCHS:  # attention over the micro-batch only: nothing is cached
            layers = tuple(LayerCache() for _ in layers)
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


def _file_type_name(value: int | None) -> str:
    """llama.cpp's file type by name (``Q4_K_M``); "" when it is missing or not one llama.cpp knows."""
    from gguf import LlamaFileType

    if value is None:
        return ""
    try:
        return LlamaFileType(value).name.removeprefix("MOSTLY_")
    except ValueError:
        return ""
