"""The spill judgement on real H100 logs: dense layer offload, MoE expert overflow, --n-cpu-moe."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vramcap.engines.judge import Placement, fit_overflow_layers, judge_spill, layer_ranges
from pytest_vramcap.engines.logparse import ServerLog, parse_server_log
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.profiles import resolve_profile


def parse(h100_logs: Path, name: str) -> ServerLog:
    return parse_server_log((h100_logs / name).read_text().splitlines())


def planned(shape: str, mix: str, **config: int) -> Placement:
    memory = estimate_memory(spec_from_shape(shape, mix), ServerConfig(**config), resolve_profile("h100", {}))
    return Placement.planned(memory)


def test_moe_expert_overflow_keeps_every_layer_and_is_still_caught(h100_logs: Path) -> None:
    """qwen3-30b-a3b under --fit on with 24 GiB free: "offloaded 49/49" and 17 GiB mapped on the host."""
    log = parse(h100_logs, "moe_qwen3_30b_fit_overflow.log")
    assert log.offloaded_layers == (49, 49) and log.layers_on_cpu == 0
    judgement = judge_spill(log, planned("qwen3-30b-a3b", "Q4_K_M", parallel=2, ctx_per_agent=87296))
    assert judgement.cpu_offload
    # The plan put 17524.43 MiB of weights on the GPU; the GPU model buffer holds 6305.92.
    assert judgement.moved_mib == pytest.approx(17524.43 - 6305.92, abs=0.01) and not judgement.moved_is_bound
    # fit.cpp: 49 - 34 = 15 full layers, then 34 overflowing from layer 15 (48 is the output layer).
    assert layer_ranges(judgement.layers) == "15-47"
    assert any("34 overflowing" in line for line in judgement.evidence)


def test_two_overflowing_layers_of_gpt_oss(h100_logs: Path) -> None:
    """gpt-oss-20b, 4 slots x 39424 on an emulated 16 GiB card: one layer's experts move (135 MiB)."""
    log = parse(h100_logs, "moe_gptoss_20b_fit_overflow.log")
    judgement = judge_spill(log, planned("gpt-oss-20b", "MXFP4_MOE", parallel=4, ctx_per_agent=39424))
    assert judgement.cpu_offload and judgement.layers == (23,)
    assert judgement.moved_mib == pytest.approx(10949.38 - 10814.56, abs=0.01)


def test_without_a_plan_the_host_buffers_beyond_the_embeddings_are_the_evidence(h100_logs: Path) -> None:
    judgement = judge_spill(parse(h100_logs, "moe_gptoss_20b_fit_overflow.log"))
    assert judgement.cpu_offload
    assert any("more than the token embeddings" in line for line in judgement.evidence)


def test_experts_the_plan_keeps_on_the_cpu_are_not_a_spill(h100_logs: Path) -> None:
    log = parse(h100_logs, "moe_qwen3_30b_ncpumoe24.log")
    placement = planned("qwen3-30b-a3b", "Q4_K_M", parallel=2, ctx_per_agent=8192, n_cpu_moe=24)
    assert not judge_spill(log, placement).cpu_offload
    # The same log against a plan that keeps every expert on the GPU: 8370 MiB moved.
    judgement = judge_spill(log, planned("qwen3-30b-a3b", "Q4_K_M", parallel=2, ctx_per_agent=8192))
    assert judgement.cpu_offload and judgement.moved_mib == pytest.approx(8370.0, abs=0.01)


@pytest.mark.parametrize("name", ["m00_q14.log", "m06_l8.log", "m09_q7.log", "iswa_gemma3_12b_nofa.log"])
def test_full_offload_runs_are_not_spills(h100_logs: Path, name: str) -> None:
    judgement = judge_spill(parse(h100_logs, name))
    assert not judgement.cpu_offload and judgement.evidence == ()


def test_a_plan_with_partial_offload_is_judged_against_its_own_layers(h100_logs: Path) -> None:
    log = parse(h100_logs, "x_ngl30.log")
    assert not judge_spill(log, planned("qwen2.5-14b", "Q4_K_M", parallel=4, ctx_per_agent=8192,
                                        gpu_layers=30)).cpu_offload
    judgement = judge_spill(log)
    assert judgement.cpu_offload and layer_ranges(judgement.layers) == "0-18"


def test_weights_missing_on_both_sides_are_not_a_spill() -> None:
    """A tensor llama.cpp skips (say, an MTP head) leaves the GPU buffer short but the host no fuller."""
    log = parse_server_log(["load_tensors: offloaded 5/5 layers to GPU",
                            "load_tensors:   CPU_Mapped model buffer size =   100.00 MiB",
                            "load_tensors:        CUDA0 model buffer size =  1000.00 MiB"])
    assert not judge_spill(log, Placement(1200.0, 100.0, 0.0, 5, 5)).cpu_offload
    # A KV spill beside it is a spill, but the missing tensor is not counted as moved weights.
    with_kv = parse_server_log([*(f"load_tensors: {text}" for text in (
        "offloaded 5/5 layers to GPU", "  CPU_Mapped model buffer size =   100.00 MiB",
        "       CUDA0 model buffer size =  1000.00 MiB")), "llama_kv_cache:        CPU KV buffer size =    64.00 MiB"])
    kv_spill = judge_spill(with_kv, Placement(1200.0, 100.0, 0.0, 5, 5))
    assert kv_spill.cpu_offload and kv_spill.moved_mib == 0.0
    moved = parse_server_log(["load_tensors: offloaded 5/5 layers to GPU",
                              "load_tensors:   CPU_Mapped model buffer size =   300.00 MiB",
                              "load_tensors:        CUDA0 model buffer size =  1000.00 MiB"])
    assert judge_spill(moved, Placement(1200.0, 100.0, 0.0, 5, 5)).moved_mib == pytest.approx(200.0)


def test_fit_layout_over_two_devices() -> None:
    """fit.cpp fills devices in order: CPU layers first, then each device's full and overflowing layers."""
    log = parse_server_log([
        "common_params_fit_impl:   - CUDA0 (A): 20 layers ( 3 overflowing),  100 MiB used,  10 MiB free",
        "common_params_fit_impl:   - CUDA1 (B): 25 layers ( 2 overflowing),  100 MiB used,  10 MiB free",
        "load_tensors: offloaded 45/49 layers to GPU",
    ])
    # Layers 0-3 on the CPU; CUDA0: 4-20 full, 21-23 overflow; CUDA1: 24-46 full, 47-48 overflow (48 = output).
    assert layer_ranges(fit_overflow_layers(log)) == "0-3, 21-23, 47"
