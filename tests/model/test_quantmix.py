"""Quantization mixes reproduce llama-quantize's per-tensor choices."""

from __future__ import annotations

import math

import pytest

from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.model.shapes import SHAPES

MIB = 1024 * 1024


def test_llama3_8b_q4_k_m_matches_the_public_log() -> None:
    """RTX 3070 log: q4_K 193, q6_K 33 tensors, 4.58 GiB; CPU 281.81 MiB, CUDA0 4403.49 MiB."""
    spec = spec_from_shape("llama3-8b", "Q4_K_M")
    counts = spec.type_counts()
    assert counts["Q4_K"] == 193 and counts["Q6_K"] == 33
    assert spec.weights_bytes == 4_912_898_048
    assert spec.tensor("token_embd.weight").nbytes / MIB == pytest.approx(281.81, abs=0.005)


@pytest.mark.parametrize("shape, f32, q4k, q6k", [
    ("qwen2.5-14b", 241, 289, 49),  # m00_q14.log "type" lines
    ("qwen2.5-7b", 141, 169, 29),   # m09_q7.log
])
def test_type_counts_match_the_fixture_files(shape: str, f32: int, q4k: int, q6k: int) -> None:
    assert spec_from_shape(shape, "Q4_K_M").type_counts() == {"F32": f32, "Q4_K": q4k, "Q6_K": q6k}


def test_more_bits_layers_get_q6_k() -> None:
    spec = spec_from_shape("llama3-8b", "Q4_K_M")
    q6_layers = sorted(t.layer for t in spec.tensors
                       if t.name.endswith("ffn_down.weight") and t.ggml_type.name == "Q6_K")
    assert q6_layers == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


def test_tied_embedding_with_odd_width_falls_back_to_q8_0() -> None:
    """Qwen2.5-0.5B: n_embd 896 is no multiple of 256, so the shared matrix is Q8_0 and rows fall back."""
    spec = spec_from_shape("qwen2.5-0.5b", "Q4_K_M")
    assert spec.tied_embeddings
    assert spec.tensor("token_embd.weight").ggml_type.name == "Q8_0"
    assert spec.tensor("blk.5.attn_q.weight").ggml_type.name == "Q5_0"  # Q4_K -> Q5_0 fallback


def test_seventy_b_bumps_attn_v() -> None:
    spec = spec_from_shape("llama3.1-70b", "Q4_K_M")
    assert spec.tensor("blk.5.attn_v.weight").ggml_type.name == "Q6_K"  # a more-bits layer (< n/8)
    assert spec.tensor("blk.11.attn_v.weight").ggml_type.name == "Q5_K"  # Q4_K bumped for LLM_TYPE_70B


def test_mxfp4_moe_mix_for_gpt_oss() -> None:
    spec = spec_from_shape("gpt-oss-20b", "MXFP4_MOE")
    assert spec.tensor("blk.0.ffn_up_exps.weight").ggml_type.name == "MXFP4"
    assert spec.tensor("blk.0.attn_q.weight").ggml_type.name == "Q8_0"
    assert spec.tensor("output.weight").ggml_type.name == "Q8_0"


@pytest.mark.parametrize("mix", ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16"])
def test_every_registered_shape_lays_out_in_every_mix(mix: str) -> None:
    sizes = {}
    for name in SHAPES:
        spec = spec_from_shape(name, mix)
        assert spec.n_layer == SHAPES[name].n_layer
        sizes[name] = spec.weights_bytes
    # bigger models are bigger, in every mix
    assert sizes["qwen2.5-0.5b"] < sizes["qwen2.5-7b"] < sizes["qwen2.5-14b"] < sizes["qwen2.5-72b"]


def test_bits_per_weight_rise_with_the_mix() -> None:
    sizes = [spec_from_shape("llama3-8b", mix).weights_bytes for mix in ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16")]
    assert sizes == sorted(sizes)
    # tools/quantize/quantize.cpp's table: Q4_K_M 4.58, Q5_K_M 5.33, Q6_K 6.14 GiB for Llama-3-8B.
    assert [round(size / 2**30, 2) for size in sizes[:3]] == [4.58, 5.33, 6.14]
    # Its Q8_0 row says 7.96 GiB; Q8_0 has no per-tensor rules, so the size follows from the
    # element counts alone: 34 bytes per 32 weights, F32 norms. That gives 7.947 GiB.
    spec = spec_from_shape("llama3-8b", "Q8_0")
    expected = sum(t.nbytes if t.ggml_type.name == "F32" else math.prod(t.dims) * 34 // 32 for t in spec.tensors)
    assert sizes[3] == expected == 8_532_934_656
