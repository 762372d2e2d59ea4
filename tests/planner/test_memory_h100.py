"""The memory model against real llama-server logs from an H100 (tests/fixtures/llama-server-h100).

Model and KV buffers must match llama.cpp's own lines to 0.01 MiB, the compute
buffer within 5%, and the predicted total within 3% of the process memory
nvidia-smi measured at peak (the "proc MiB" column of the fixtures' README). Without
flash attention the runs peaked after ~3k-token bursts, with the slots partly filled:
the plan (full slots) is above that peak, and the same total with the KQ-scores copy
of 4096 cells in use is within 3% of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vramcap.engines.logparse import parse_server_log
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory, kq_scores_copy_bytes
from pytest_vramcap.planner.profiles import resolve_profile

MIB = 1024 * 1024

# log, shape, agents, ctx per agent, flash attention, -ngl, peak process MiB (README)
FIXTURE_RUNS = [
    ("m00_q14.log", "qwen2.5-14b", 4, 8192, True, None, 15030),
    # The fixture's synthetic llama3.1-8b carried no rope_freqs tensor: the Llama-3.0 shape is its twin.
    ("m06_l8.log", "llama3-8b", 1, 8192, False, None, 6820),
    ("m09_q7.log", "qwen2.5-7b", 2, 32768, False, None, 10456),
    ("x_ngl30.log", "qwen2.5-14b", 4, 8192, True, 30, 9676),
    ("x_offload_fiton.log", "qwen2.5-14b", 4, 32768, True, 21, 15246),  # --fit chose 21 layers
]


def predict(shape: str, agents: int, ctx: int, flash_attn: bool, ngl: int | None):  # type: ignore[no-untyped-def]
    spec = spec_from_shape(shape, "Q4_K_M")
    config = ServerConfig(parallel=agents, ctx_per_agent=ctx, flash_attn=flash_attn, gpu_layers=ngl)
    return estimate_memory(spec, config, resolve_profile("h100-80gb"))


@pytest.mark.parametrize("run", FIXTURE_RUNS, ids=[run[0] for run in FIXTURE_RUNS])
def test_buffers_match_the_h100_logs(run: tuple, h100_logs: Path) -> None:
    name, shape, agents, ctx, flash_attn, ngl, peak_mib = run
    log = parse_server_log((h100_logs / name).read_text().splitlines())
    memory = predict(shape, agents, ctx, flash_attn, ngl)

    assert memory.gpu.model / MIB == pytest.approx(log.model.device(), abs=0.01)
    assert memory.gpu.context / MIB == pytest.approx(log.kv.device(), abs=0.01)
    assert memory.cpu.context / MIB == pytest.approx(log.kv.host(), abs=0.01)
    assert memory.gpu_layers == log.offloaded_layers[0]
    assert memory.total_layers == log.offloaded_layers[1]
    assert memory.gpu.compute / MIB == pytest.approx(log.compute.device(), rel=0.05)
    at_peak = memory.gpu.total
    if not flash_attn:
        spec, ub = spec_from_shape(shape, "Q4_K_M"), memory.sizing.n_ubatch
        assert at_peak / MIB > peak_mib
        at_peak += kq_scores_copy_bytes(spec, 4096, ub) - kq_scores_copy_bytes(spec, memory.sizing.cells_per_stream, ub)
    assert at_peak / MIB == pytest.approx(peak_mib, rel=0.03)


def test_full_offload_cpu_buffer_is_the_input_embedding(h100_logs: Path) -> None:
    log = parse_server_log((h100_logs / "m00_q14.log").read_text().splitlines())
    memory = predict("qwen2.5-14b", 4, 8192, True, None)
    assert memory.cpu.model / MIB == pytest.approx(log.model.by_backend["CPU_Mapped"], abs=0.01)


def test_seed_config_leaves_what_the_emulated_16gb_card_showed(h100_logs: Path) -> None:
    """With free VRAM held at 16374 MiB the seed loaded with 1338 MiB still free (README)."""
    memory = predict("qwen2.5-14b", 4, 8192, True, None)
    assert 16374 - memory.gpu.total / MIB == pytest.approx(1338, abs=16374 * 0.01)


def test_llama_fit_params_overstates_the_servers_compute_buffer(h100_logs: Path) -> None:
    """fit-params reserves logits for a whole ubatch (345 MiB); the server for one row per slot (129 MiB)."""
    _device, model, context, compute = (h100_logs / "fitparams.log").read_text().split("\n")[0].split()
    memory = predict("qwen2.5-14b", 4, 8192, True, None)
    assert int(model) == round(memory.gpu.model / MIB)
    assert int(context) == round(memory.gpu.context / MIB)
    assert int(compute) > memory.gpu.compute / MIB * 2


def test_an_embedding_server_reserves_logits_for_every_token_of_the_micro_batch(h100_logs: Path) -> None:
    """qwen3-embedding-0.6b with --embeddings beside a chat model on an H100 (benchmarks/gpu/run_on_device.sh
    models): buffers to the byte, the compute buffer within 5% and the process's peak within 3%."""
    log = parse_server_log((h100_logs / "embed_qwen3_0.6b.log").read_text().splitlines())
    spec = spec_from_shape("qwen3-embedding-0.6b", "Q8_0")
    config = ServerConfig(parallel=1, ctx_per_agent=8192, embedding=True)
    memory = estimate_memory(spec, config, resolve_profile("h100-80gb"))
    assert memory.gpu.model / MIB == pytest.approx(log.model.device(), abs=0.01)
    assert memory.gpu.context / MIB == pytest.approx(log.kv.device(), abs=0.01)
    assert memory.gpu.compute / MIB == pytest.approx(log.compute.device(), rel=0.05)
    assert memory.gpu.total / MIB == pytest.approx(2402, rel=0.03)
    chatting = estimate_memory(spec, ServerConfig(parallel=1, ctx_per_agent=8192), resolve_profile("h100-80gb"))
    assert log.compute.device() > 5 * chatting.gpu.compute / MIB  # one output row would be a sixth of it
