"""One ServerConfig rendered for llama-server and for Ollama (no engine needed)."""

from __future__ import annotations

from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.planner.render import llama_server_args, ollama_create_request, ollama_env, ollama_modelfile

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
        "FROM qwen2.5:14b\nPARAMETER num_ctx 4096\nPARAMETER num_gpu 30\nPARAMETER num_batch 256\n")
    body = ollama_create_request(config, "qwen2.5-vramcap", "qwen2.5:14b", system="be brief")
    assert body == {"model": "qwen2.5-vramcap", "from": "qwen2.5:14b", "stream": False, "system": "be brief",
                    "parameters": {"num_ctx": 4096, "num_gpu": 30, "num_batch": 256}}
