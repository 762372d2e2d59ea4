"""KV cache sizes against shared/reference/vram-planner-anchors.md section 8.

Each case was checked against llama.cpp's source (llama-context.cpp for n_ctx /
n_ctx_seq padding, llama-kv-cache.cpp for the tensors, llama-kv-cache-iswa.cpp
for SWA cells); all 22 rows of the table agree with it. Expected values are
bytes; MiB in the comments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vramcap.model import GgufFile, LayerCache, ModelSpec, spec_from_shape
from pytest_vramcap.planner.memory import ServerConfig, context_sizing, kv_cache_bytes

MIB = 1024 * 1024


def attention_spec(n_layer: int, n_kv: int, head_dim: int, *, n_swa: int = 0, swa: tuple[bool, ...] | None = None,
                   mla_width: int = 0) -> ModelSpec:
    """A spec with just the attention geometry the KV cache depends on."""
    swa = swa or (False,) * n_layer
    if mla_width:
        layers = tuple(LayerCache(k_width=mla_width, v_width=0) for _ in range(n_layer))
    else:
        layers = tuple(LayerCache(k_width=n_kv * head_dim, v_width=n_kv * head_dim, swa=swa[il])
                       for il in range(n_layer))
    return ModelSpec(name="anchor", source=GgufFile(Path("anchor.gguf")), arch="llama", n_layer=n_layer, n_embd=4096,
                     n_head=32, head_dim=head_dim, n_vocab=32000, n_ctx_train=131072, n_ff=14336, n_swa=n_swa,
                     layers=layers, tensors=())


def gemma3_swa(n_layer: int) -> tuple[bool, ...]:
    return tuple(il % 6 < 5 for il in range(n_layer))


def alternate_swa(n_layer: int) -> tuple[bool, ...]:
    return tuple(il % 2 < 1 for il in range(n_layer))


LLAMA31_8B = attention_spec(32, 8, 128)
GEMMA3_27B = attention_spec(62, 16, 128, n_swa=1024, swa=gemma3_swa(62))
GPT_OSS_20B = attention_spec(24, 8, 64, n_swa=128, swa=alternate_swa(24))

CASES = [
    # id, spec, -c (total context), agents (-np), unified, cache type, swa_full, expected bytes
    ("1-llama8b-8k", LLAMA31_8B, 8192, 1, False, "f16", False, 1024 * MIB),
    ("2-llama8b-q8_0", LLAMA31_8B, 8192, 1, False, "q8_0", False, 570_425_344),  # 544 MiB
    ("3-llama8b-q4_0", LLAMA31_8B, 8192, 1, False, "q4_0", False, 301_989_888),  # 288 MiB
    # ctx 10000 is -c 10000 in total: 10000/3 per slot -> 3413 -> PAD 3584 cells x 3 streams
    ("4-llama8b-10000-np3", LLAMA31_8B, 10000, 3, False, "f16", False, 1344 * MIB),
    ("5-llama8b-10000-np3-unified", LLAMA31_8B, 10000, 3, True, "f16", False, 1280 * MIB),
    ("6-llama8b-512", LLAMA31_8B, 512, 1, False, "f16", False, 64 * MIB),
    ("7-qwen2.5-0.5b", attention_spec(24, 2, 64), 32768, 1, False, "f16", False, 384 * MIB),
    ("8-qwen2.5-7b", attention_spec(28, 4, 128), 32768, 1, False, "f16", False, 1792 * MIB),
    ("9-qwen2.5-32b-q8_0", attention_spec(64, 8, 128), 32768, 1, False, "q8_0", False, 4352 * MIB),
    ("10-qwen3-8b", attention_spec(36, 8, 128), 40960, 1, False, "f16", False, 5760 * MIB),
    ("11-qwen3-30b-a3b-np4", attention_spec(48, 4, 128), 32768, 4, False, "f16", False, 3072 * MIB),
    ("12-llama70b", attention_spec(80, 8, 128), 8192, 1, False, "f16", False, 2560 * MIB),
    ("13-mistral-nemo", attention_spec(40, 8, 128), 16384, 1, False, "f16", False, 2560 * MIB),
    ("14-phi3-mini", attention_spec(32, 32, 96), 4096, 1, False, "f16", False, 1536 * MIB),
    ("15-gemma2-9b", attention_spec(42, 8, 256, n_swa=4096, swa=alternate_swa(42)), 8192, 1, False, "f16", False,
     2100 * MIB),
    ("16-gemma3-12b", attention_spec(48, 8, 256, n_swa=1024, swa=gemma3_swa(48)), 32768, 1, False, "f16", False,
     2528 * MIB),
    ("17-gemma3-27b", GEMMA3_27B, 32768, 1, False, "f16", False, 3184 * MIB),
    ("17b-gemma3-27b-swa-full", GEMMA3_27B, 32768, 1, False, "f16", True, 15872 * MIB),
    ("18-gemma3-27b-128k", GEMMA3_27B, 131072, 1, False, "f16", False, 10864 * MIB),
    ("19-gpt-oss-20b", GPT_OSS_20B, 131072, 1, False, "f16", False, 3090 * MIB),
    ("20-gpt-oss-20b-np4", GPT_OSS_20B, 131072, 4, False, "f16", False, 3144 * MIB),
    ("21-gpt-oss-20b-np4-unified", GPT_OSS_20B, 131072, 4, True, "f16", False, 3096 * MIB),
    ("22-deepseek-r1-mla", attention_spec(61, 1, 576, mla_width=576), 32768, 1, False, "f16", False, 2196 * MIB),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_kv_bytes_match_llama_cpp(case: tuple) -> None:
    _, spec, ctx_total, agents, unified, cache, swa_full, expected = case
    config = ServerConfig(parallel=agents, ctx_per_agent=ctx_total // agents, n_ctx=ctx_total, cache_type_k=cache,
                          cache_type_v=cache, flash_attn=True, kv_unified=unified, swa_full=swa_full)
    assert kv_cache_bytes(spec, config) == expected


def test_non_unified_slots_pad_to_256_each() -> None:
    config = ServerConfig(parallel=3, ctx_per_agent=3333, n_ctx=10000)
    sizing = context_sizing(LLAMA31_8B, config)
    assert (sizing.cells_per_stream, sizing.n_stream, sizing.n_ctx) == (3584, 3, 10752)


def test_registry_shapes_carry_the_same_kv_geometry() -> None:
    """The registry's gemma3-27b and gpt-oss-20b reproduce the hand-built anchors."""
    for name, anchor, ctx, expected in (("gemma3-27b", GEMMA3_27B, 32768, 3184 * MIB),
                                        ("gpt-oss-20b", GPT_OSS_20B, 131072, 3090 * MIB)):
        spec = spec_from_shape(name, "Q8_0" if name.startswith("gemma") else "MXFP4_MOE")
        assert spec.layers == anchor.layers
        assert kv_cache_bytes(spec, ServerConfig(parallel=1, ctx_per_agent=ctx)) == expected


def test_quantized_v_without_flash_attention_is_refused() -> None:
    from pytest_vramcap.errors import ConfigError

    with pytest.raises(ConfigError, match="flash attention"):
        ServerConfig(parallel=1, ctx_per_agent=4096, cache_type_k="q8_0", cache_type_v="q8_0", flash_attn=False)


def test_recurrent_state_is_per_sequence_and_independent_of_context() -> None:
    """Mamba layers hold f32 conv + SSM state per sequence (llama-memory-recurrent.cpp), whatever the context."""
    from pytest_vramcap.model.metadata import spec_from_metadata

    kv = {"general.architecture": "mamba", "mamba.block_count": 24, "mamba.embedding_length": 768,
          "mamba.ssm.conv_kernel": 4, "mamba.ssm.inner_size": 1536, "mamba.ssm.state_size": 16,
          "mamba.context_length": 1_000_000}
    spec = spec_from_metadata(kv, [], name="mamba-130m", source=GgufFile(Path("anchor.gguf")), file_size=None)
    per_layer = ((4 - 1) * 1536 + 16 * 1536) * 4  # n_embd_r + n_embd_s, f32
    for agents, ctx in ((1, 4096), (1, 65536), (4, 4096)):
        config = ServerConfig(parallel=agents, ctx_per_agent=ctx)
        assert kv_cache_bytes(spec, config) == 24 * per_layer * agents
