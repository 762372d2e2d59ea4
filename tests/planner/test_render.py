"""One ServerConfig rendered for llama-server and for Ollama (no engine needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pytest_vramcap.errors import ConfigError
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.planner.render import (
    llama_server_args,
    ollama_create_request,
    ollama_env,
    ollama_modelfile,
    ollama_refusal,
    ollama_rendering,
)

CONFIG = ServerConfig(parallel=4, ctx_per_agent=8192, cache_type_k="q8_0", cache_type_v="q8_0")


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_llama_server_pins_the_plan_by_default() -> None:
    args = llama_server_args(CONFIG, "m.gguf", fit_margin_mib=1024)
    assert args[:2] == ["-m", "m.gguf"]
    assert (flag(args, "-c"), flag(args, "-np"), flag(args, "--cache-type-k"), flag(args, "--cache-type-v")) == (
        "32768", "4", "q8_0", "q8_0")
    assert (flag(args, "-ngl"), flag(args, "--fit"), flag(args, "-ub")) == ("all", "off", "512")
    assert "--kv-unified" not in args and "--fit-target" not in args


def test_llama_server_with_fit_behaves_like_ollama() -> None:
    args = llama_server_args(CONFIG, "m.gguf", fit_margin_mib=768, fit=True)
    assert (flag(args, "--fit"), flag(args, "--fit-target")) == ("on", "768") and "-ngl" not in args


def test_partial_offload_and_unified_kv() -> None:
    config = ServerConfig(parallel=2, ctx_per_agent=4096, gpu_layers=20, kv_unified=True)
    args = llama_server_args(config, "m.gguf", fit_margin_mib=1024)
    assert flag(args, "-ngl") == "20" and "--kv-unified" in args


def test_ollama_env_pins_every_knob_that_would_reload_the_model() -> None:
    env = ollama_env(CONFIG, fit_margin_mib=1024)
    assert env == {
        "OLLAMA_NUM_PARALLEL": "4", "OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_MAX_LOADED_MODELS": "1", "OLLAMA_MAX_QUEUE": "512",
        "OLLAMA_KEEP_ALIVE": "-1", "LLAMA_ARG_FIT_TARGET": "1024"}


def test_modelfile_and_create_request_carry_the_same_parameters() -> None:
    config = ServerConfig(parallel=2, ctx_per_agent=4096, gpu_layers=30, n_ubatch=256)
    assert ollama_modelfile(config, "qwen2.5:14b") == (
        "FROM qwen2.5:14b\nPARAMETER num_ctx 4096\nPARAMETER num_batch 256\nPARAMETER num_gpu 30\n")
    body = ollama_create_request(config, "qwen2.5-vramcap", "qwen2.5:14b", system="be brief")
    assert body == {"model": "qwen2.5-vramcap", "from": "qwen2.5:14b", "stream": False, "system": "be brief",
                    "parameters": {"num_ctx": 4096, "num_batch": 256, "num_gpu": 30}}


def test_num_batch_is_always_set_to_the_plans_micro_batch() -> None:
    """Without num_batch Ollama picks -b N -ub N itself (up to 2048): a compute buffer the plan never priced."""
    assert "PARAMETER num_batch 512\n" in ollama_modelfile(CONFIG, "m")
    assert ollama_create_request(CONFIG, "m-vramcap", "m")["parameters"]["num_batch"] == 512


def test_a_system_prompt_with_triple_quotes_has_no_modelfile_form() -> None:
    """Ollama's parser has no escapes; the old \\"\\"\\" form reached the model as backslashes."""
    assert ollama_modelfile(CONFIG, "m", system='say "hi"\nthen stop').endswith('SYSTEM """say "hi"\nthen stop"""\n')
    with pytest.raises(ConfigError, match="cannot be written in a Modelfile"):
        ollama_modelfile(CONFIG, "m", system='a """quoted""" word')
    quoted = 'a """quoted""" word'
    assert ollama_create_request(CONFIG, "m-vramcap", "m", system=quoted)["system"] == quoted


SPEC = spec_from_shape("qwen2.5-7b", "Q4_K_M")


@pytest.mark.parametrize("config, reason", [
    (ServerConfig(parallel=2, ctx_per_agent=4096, cache_type_k="q8_0", cache_type_v="f16"), "one type for K and V"),
    (ServerConfig(parallel=2, ctx_per_agent=4096, kv_unified=True), "never unified"),
    (ServerConfig(parallel=2, ctx_per_agent=4096, swa_full=True), "--swa-full"),
    (ServerConfig(parallel=2, ctx_per_agent=4096, n_cpu_moe=12), "no --n-cpu-moe"),
    (ServerConfig(parallel=2, ctx_per_agent=10**6), "clamps num_ctx to the model's training context"),
], ids=["k-v-differ", "unified", "swa-full", "n-cpu-moe", "ctx-over-training"])
def test_plans_ollama_cannot_express_are_refused_with_the_reason(config: ServerConfig, reason: str) -> None:
    assert reason in (ollama_refusal(config, SPEC) or "")
    rendered = ollama_rendering(config, SPEC, "m", fit_margin_mib=1024)
    assert reason in rendered["refused"]
    assert (rendered["env"], rendered["modelfile"], rendered["create_request"]) == (None, None, None)


def test_single_slot_architectures_are_refused_only_with_several_agents() -> None:
    qwen3next = replace(SPEC, arch="qwen3next")
    assert "one slot" in (ollama_refusal(ServerConfig(parallel=4, ctx_per_agent=4096), qwen3next) or "")
    assert ollama_refusal(ServerConfig(parallel=1, ctx_per_agent=4096), qwen3next) is None
    assert ollama_refusal(CONFIG, SPEC) is None
