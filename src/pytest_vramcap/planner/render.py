"""Render one plan for the engines: llama-server flags and Ollama configuration.

Ollama >= 0.30 starts llama-server as ``-c num_ctx*np -np np --cache-type-k/v X
--flash-attn on|off`` with ``--fit`` on, so the two renderings describe the same
memory. The Ollama side pins every knob that would otherwise reload the model
or let the scheduler pick a different context.
"""

from __future__ import annotations

from typing import Any

from ..defaults import DEFAULT_BATCH, DEFAULT_UBATCH
from .memory import ServerConfig

__all__ = ["llama_server_args", "ollama_create_request", "ollama_env", "ollama_modelfile"]


def llama_server_args(config: ServerConfig, model_path: str, *, fit_margin_mib: int, fit: bool = False) -> list[str]:
    """Flags for ``llama-server`` (without host/port, which the engine adds).

    ``fit=False`` (our default) pins the plan's layers with ``-ngl`` and ``--fit off``,
    so a config that does not fit fails loudly (OOM). ``fit=True`` reproduces Ollama
    >= 0.30: no ``-ngl``, ``--fit on`` with the margin, and llama.cpp moves layers to
    the CPU when memory runs short.
    """
    args = [
        "-m", model_path,
        "-c", str(config.ctx_total),
        "-np", str(config.parallel),
        "--cache-type-k", config.cache_type_k,
        "--cache-type-v", config.cache_type_v,
        "--flash-attn", "on" if config.flash_attn else "off",
        "-b", str(config.n_batch),
        "-ub", str(config.n_ubatch),
    ]
    if fit:
        args += ["--fit", "on", "--fit-target", str(fit_margin_mib)]
    else:
        # The plan already placed the layers: let --fit neither shrink the
        # context nor move layers behind our back.
        args += ["-ngl", "all" if config.gpu_layers is None else str(config.gpu_layers), "--fit", "off"]
    if config.n_cpu_moe:
        args += ["--n-cpu-moe", str(config.n_cpu_moe)]
    if config.kv_unified:
        args.append("--kv-unified")
    if config.swa_full:
        args.append("--swa-full")
    return args


def ollama_env(config: ServerConfig, *, fit_margin_mib: int) -> dict[str, str]:
    """Environment for ``ollama serve``."""
    env = {
        "OLLAMA_NUM_PARALLEL": str(config.parallel),
        # Pinned: a request with another num_ctx reloads the model.
        "OLLAMA_CONTEXT_LENGTH": str(config.ctx_per_agent),
        "OLLAMA_FLASH_ATTENTION": "1" if config.flash_attn else "0",
        "OLLAMA_KV_CACHE_TYPE": config.cache_type_k,
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "OLLAMA_MAX_QUEUE": str(max(512, 4 * config.parallel)),
        "OLLAMA_KEEP_ALIVE": "-1",
        # llama.cpp's --fit keeps this much free per device (Ollama passes it through).
        "LLAMA_ARG_FIT_TARGET": str(fit_margin_mib),
    }
    return env


def _parameters(config: ServerConfig) -> dict[str, Any]:
    parameters: dict[str, Any] = {"num_ctx": config.ctx_per_agent}
    if config.gpu_layers is not None:
        parameters["num_gpu"] = config.gpu_layers
    if config.n_batch != DEFAULT_BATCH or config.n_ubatch != DEFAULT_UBATCH:
        parameters["num_batch"] = config.n_ubatch
    return parameters


def ollama_modelfile(config: ServerConfig, base_model: str, system: str | None = None) -> str:
    lines = [f"FROM {base_model}"]
    lines += [f"PARAMETER {key} {value}" for key, value in _parameters(config).items()]
    if system:
        lines.append('SYSTEM """' + system.replace('"""', '\\"\\"\\"') + '"""')
    return "\n".join(lines) + "\n"


def ollama_create_request(config: ServerConfig, name: str, base_model: str,
                          system: str | None = None) -> dict[str, Any]:
    """Body of ``POST /api/create`` (JSON form, Ollama >= 0.5.5)."""
    body: dict[str, Any] = {"model": name, "from": base_model, "parameters": _parameters(config), "stream": False}
    if system:
        body["system"] = system
    return body
