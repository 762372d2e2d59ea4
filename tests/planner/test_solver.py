from __future__ import annotations

import pytest

from pytest_vramcap.defaults import MIB
from pytest_vramcap.errors import ConfigError
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner import PlanRequest, make_plan
from pytest_vramcap.planner.output import plan_json
from pytest_vramcap.planner.profiles import resolve_profile

Q14 = spec_from_shape("qwen2.5-14b", "Q4_K_M")


def plan(profile: str = "rtx4080", **request):  # type: ignore[no-untyped-def]
    return make_plan(Q14, resolve_profile(profile, {}), PlanRequest(**request))


def test_seed_config_on_the_h100_matches_the_measured_process_memory() -> None:
    seed = plan("h100-80gb", agents=4, ctx_per_agent=8192)
    assert seed.fits
    assert seed.total_mib == pytest.approx(15030, rel=0.03)  # nvidia-smi peak, m00_q14.log


def test_seed_config_fits_an_rtx4080_under_the_fit_margin() -> None:
    seed = plan("rtx4080", agents=4, ctx_per_agent=8192)
    assert seed.fits and seed.headroom_mib >= 1024
    assert seed.breaking_term is None and seed.alternatives == ()


def test_solving_for_agents_stops_where_the_next_slot_would_break_the_margin() -> None:
    solved = plan("rtx4080", ctx_per_agent=8192)
    assert solved.solved_for == "agents" and solved.config.parallel == 4 and solved.fits
    over = plan("rtx4080", agents=5, ctx_per_agent=8192)
    assert not over.fits


def test_solving_for_context_returns_the_largest_fitting_multiple_of_256() -> None:
    solved = plan("rtx4080", agents=4)
    assert solved.solved_for == "ctx_per_agent" and solved.fits
    assert solved.config.ctx_per_agent % 256 == 0
    assert not plan("rtx4080", agents=4, ctx_per_agent=solved.config.ctx_per_agent + 256).fits


def test_a_plan_that_does_not_fit_names_the_term_and_prices_the_ways_out() -> None:
    big = plan("16gb", agents=4, ctx_per_agent=32768)
    assert not big.fits
    assert big.breaking_term.startswith("KV cache")
    labels = {alternative.label: alternative for alternative in big.alternatives}
    assert any(label.startswith("q8_0") for label in labels)
    assert any("agent" in label and alternative.fits for label, alternative in labels.items())
    offload = next(a for a in big.alternatives if a.label.startswith("partial offload"))
    # llama.cpp's --fit put 21 of 49 layers on a 16 GiB budget for this config (x_offload_fiton.log)
    assert offload.fits and offload.config.gpu_layers == 21
    # 28 of its 49 layers read from host memory at 60 GB/s instead of the card's 630: one agent is 4x slower.
    assert offload.decode.single_stream_tps < big.decode.single_stream_tps / 4


def test_weights_that_cannot_fit_say_so() -> None:
    huge = make_plan(spec_from_shape("qwen2.5-72b", "Q4_K_M"), resolve_profile("16gb", {}),
                     PlanRequest(agents=1, ctx_per_agent=4096))
    assert not huge.fits and huge.breaking_term.startswith("model weights")


def test_quantized_kv_shrinks_the_context_term() -> None:
    f16 = plan(agents=4, ctx_per_agent=8192)
    q8 = plan(agents=4, ctx_per_agent=8192, kv_cache="q8_0")
    assert q8.memory.gpu.context == f16.memory.gpu.context * 17 // 32


def test_parallel_agents_are_expected_to_beat_sequential() -> None:
    seed = plan("h100-80gb", agents=4, ctx_per_agent=8192)
    assert 1.5 < seed.decode.parallel_speedup < 4


@pytest.mark.parametrize("request_kwargs, message", [
    ({"agents": 0}, "--agents"),
    ({"ctx_per_agent": -5}, "--ctx-per-agent"),
    ({"kv_cache": "q3_k"}, "--kv-cache"),
    ({"fit_margin_mib": -1}, "--fit-margin"),
])
def test_out_of_range_requests(request_kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PlanRequest(**request_kwargs)


@pytest.mark.parametrize("agents, ctx", [(4, 8192), (None, 8192), (4, None)])
def test_quantized_kv_without_flash_attention_is_refused_checking_or_solving(agents: int | None,
                                                                            ctx: int | None) -> None:
    """One check, in ServerConfig, whichever way the plan is made."""
    with pytest.raises(ConfigError, match="q8_0 KV cache needs flash attention on"):
        plan(agents=agents, ctx_per_agent=ctx, kv_cache="q8_0", flash_attn=False)


def test_gpu_layers_beyond_the_model() -> None:
    with pytest.raises(ConfigError, match="exceeds the model"):
        plan(agents=1, ctx_per_agent=4096, gpu_layers=99)


def test_rendered_configs_agree_with_the_plan() -> None:
    data = plan_json(plan(agents=4, ctx_per_agent=8192, kv_cache="q8_0"))
    args = data["llama_server"]["args"]
    assert args[args.index("-c") + 1] == "32768" and args[args.index("-np") + 1] == "4"
    assert args[args.index("--cache-type-v") + 1] == "q8_0"
    env = data["ollama"]["env"]
    assert env["OLLAMA_NUM_PARALLEL"] == "4" and env["OLLAMA_CONTEXT_LENGTH"] == "8192"
    assert env["OLLAMA_KV_CACHE_TYPE"] == "q8_0" and env["OLLAMA_FLASH_ATTENTION"] == "1"
    assert "PARAMETER num_ctx 8192" in data["ollama"]["modelfile"]
    assert data["ollama"]["create_request"]["parameters"] == {"num_ctx": 8192, "num_batch": 512}
    assert data["ollama"]["refused"] is None and data["ollama"]["model"].endswith("-vramcap")
    assert data["memory"]["gpu"]["total_mib"] == round(plan(agents=4, ctx_per_agent=8192,
                                                            kv_cache="q8_0").memory.gpu.total / MIB, 2)
