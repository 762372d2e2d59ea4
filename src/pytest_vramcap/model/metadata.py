"""A ModelSpec from GGUF-style key/value metadata: a GGUF header, a shape's keys, or Ollama's ``model_info``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ModelSourceError
from .shapes import SWA_PATTERN, swa_layers
from .source import ModelSource
from .spec import LayerCache, ModelSpec, Tensor

__all__ = ["SUPPORTED_ARCHS", "spec_from_metadata"]

# Architectures whose KV layout we model; anything else is refused rather than
# guessed. Names as in GGUF ``general.architecture``.
SUPPORTED_ARCHS = frozenset(
    {"llama", "qwen2", "qwen3", "qwen3moe", "qwen2moe", "gemma2", "gemma3", "phi3", "gpt-oss", "mistral3",
     "deepseek2", "mamba", "mamba2", "granite", "olmo2", "cohere2", "starcoder2", "internlm2", "exaone"}
)
_RECURRENT_ARCHS = frozenset({"mamba", "mamba2"})
_ARCH_ALIASES = {"gptoss": "gpt-oss"}  # Ollama's spelling


def _per_layer(value: Any, n_layer: int, key: str) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != n_layer:
            raise ModelSourceError(f"{key} lists {len(value)} values for {n_layer} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layer


def _attention_layers(get: Any, arch: str, n_layer: int, n_embd: int, n_swa: int, source: ModelSource,
                      prefix: str) -> tuple[int, int, tuple[LayerCache, ...]]:
    """(n_head, head_dim, per-layer KV geometry) of an attention model."""
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
    return n_head, head_dim, layers


def _recurrent_layers(get: Any, n_layer: int, n_embd: int) -> tuple[int, int, tuple[LayerCache, ...]]:
    """(n_head, head_dim, per-layer state) of a Mamba model: conv + SSM state per sequence."""
    d_conv, d_inner = int(get("ssm.conv_kernel", 0)), int(get("ssm.inner_size", 0))
    d_state, n_group = int(get("ssm.state_size", 0)), int(get("ssm.group_count", 0) or 0)
    state = (max(d_conv - 1, 0)) * (d_inner + 2 * n_group * d_state) + d_state * d_inner
    n_head = int(get("attention.head_count", 0) or 0)
    return n_head, n_embd // n_head if n_head else 0, tuple(LayerCache(recurrent_floats=state) for _ in range(n_layer))


def spec_from_metadata(kv: Mapping[str, Any], tensors: Sequence[Tensor], *, name: str, source: ModelSource,
                       file_size: int | None) -> ModelSpec:
    """Read the hyper-parameters the memory model needs from ``{arch}.*`` keys."""
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
        n_head, head_dim, layers = _recurrent_layers(get, n_layer, n_embd)
    else:
        n_head, head_dim, layers = _attention_layers(get, arch, n_layer, n_embd, n_swa, source, prefix)
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
        file_type=_file_type_name(kv.get("general.file_type")),
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
