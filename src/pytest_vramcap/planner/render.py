"""Render one plan for the engines: llama-server flags and Ollama configuration.

Ollama >= 0.30 starts llama-server as ``-c num_ctx*np -np np --cache-type-k/v X
--flash-attn on|off -b N -ub N`` with ``--fit`` on (llm/llama_server.go), so the
two renderings describe the same memory. The Ollama side pins every knob that
would otherwise reload the model or let the scheduler pick a different context or
batch, and refuses plans Ollama has no setting for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..model.spec import ModelSpec
from .memory import ServerConfig

__all__ = [
    "OLLAMA_SINGLE_SLOT_ARCHS",
    "llama_server_args",
    "modelfile_parameters",
    "ollama_create_request",
    "ollama_env",
    "ollama_model_name",
    "ollama_modelfile",
    "ollama_refusal",
    "ollama_rendering",
]


def llama_server_args(config: ServerConfig, model_path: str, *, fit_margin_mib: int, fit: bool = False) -> list[str]:
    """Flags for ``llama-server`` (without host/port, which the engine adds).

    ``fit=False`` (our default) pins the plan's layers with ``-ngl`` and ``--fit off`` (on several cards, each
    one's layer count with ``-ts``), so a config that does not fit fails loudly (OOM). ``fit=True`` reproduces
    Ollama >= 0.30: no ``-ngl`` or ``-ts``, ``--fit on`` with the margin (kept on every card), and llama.cpp
    moves layers to the CPU when memory runs short.
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
        if config.main_gpu is not None:  # several cards, this model on one of them
            args += ["-sm", "none", "-mg", str(config.main_gpu)]
        elif config.tensor_split:  # several cards: each one's layers as the plan counted them (a count per card)
            args += ["-sm", "layer", "-ts", ",".join(map(str, config.tensor_split))]
    if config.n_cpu_moe:
        args += ["--n-cpu-moe", str(config.n_cpu_moe)]
    if config.kv_unified:
        args.append("--kv-unified")
    if config.swa_full:
        args.append("--swa-full")
    if config.embedding:
        args.append("--embeddings")
    return args


# Ollama runs these architectures with one slot whatever OLLAMA_NUM_PARALLEL says
# (server/sched.go, Scheduler.load: "model architecture does not currently support parallel requests").
OLLAMA_SINGLE_SLOT_ARCHS = frozenset({
    "mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
    "nemotron_h", "nemotron_h_moe", "nemotron_h_omni",
})


def ollama_model_name(spec: ModelSpec, role: str | None = None) -> str:
    """The model vramcap creates: its own num_ctx wins over a base Modelfile's (which beats OLLAMA_CONTEXT_LENGTH).
    With several models each role gets its own (two roles may share a base model with different contexts)."""
    base = spec.name.split(":")[0]
    return f"{base}-{role}-vramcap" if role else f"{base}-vramcap"


def ollama_refusal(config: ServerConfig, spec: ModelSpec) -> str | None:
    """Why Ollama (>= 0.30) cannot run ``config`` as planned, or None when it can."""
    if config.cache_type_k != config.cache_type_v:
        return (f"Ollama sets one type for K and V (OLLAMA_KV_CACHE_TYPE -> --cache-type-k/-v X); "
                f"the plan has K {config.cache_type_k} and V {config.cache_type_v}")
    if config.kv_unified:
        return "Ollama always passes -np, so its KV cache is never unified (llm/llama_server.go); plan without it"
    if config.swa_full:
        return "Ollama has no setting for --swa-full; plan without it"
    if config.n_cpu_moe:
        return (f"Ollama has no --n-cpu-moe (its one placement knob is num_gpu, -ngl); "
                f"run --n-cpu-moe {config.n_cpu_moe} on llama-server, or plan fewer agents or less context")
    if config.parallel > 1 and spec.arch in OLLAMA_SINGLE_SLOT_ARCHS:
        return (f"Ollama runs {spec.arch} with one slot whatever OLLAMA_NUM_PARALLEL says (server/sched.go): "
                f"{config.parallel - 1} of {config.parallel} agents would wait; plan 1 agent or use llama-server")
    if config.ctx_per_agent > spec.n_ctx_train:
        return (f"Ollama clamps num_ctx to the model's training context {spec.n_ctx_train} (llm/server.go), "
                f"below the planned {config.ctx_per_agent}")
    return None


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
    if config.tensor_split:
        # Several cards: Ollama puts a model on one card when its estimate fits 80% of it, else spreads it over
        # the best group of cards (server/sched.go selectLlamaServerPlacement); OLLAMA_SCHED_SPREAD always spreads.
        # It passes no -ts: llama-server splits by free memory, then --fit (the plan's notes price that split).
        env["OLLAMA_SCHED_SPREAD"] = "1"
    return env



def ollama_set_parallel(models: Sequence[tuple[ServerConfig, ModelSpec]]) -> int:
    """The one OLLAMA_NUM_PARALLEL of several models: the most slots a generating model needs (an embedding
    model gets one slot whatever it says, server/sched.go)."""
    return max((config.parallel for config, spec in models if not spec.embedding), default=1)


def ollama_set_env(models: Sequence[tuple[ServerConfig, ModelSpec]], *, fit_margin_mib: int) -> dict[str, str]:
    """Environment for one ``ollama serve`` running several models (the first model's settings where they are
    global): OLLAMA_MAX_LOADED_MODELS is the count, so no load evicts another."""
    parallel = ollama_set_parallel(models)
    env = ollama_env(models[0][0], fit_margin_mib=fit_margin_mib)
    env.update(OLLAMA_NUM_PARALLEL=str(parallel), OLLAMA_MAX_LOADED_MODELS=str(len(models)),
               OLLAMA_MAX_QUEUE=str(max(512, 4 * parallel)))
    return env

def modelfile_parameters(config: ServerConfig) -> dict[str, Any]:
    """The runner options the plan's Modelfile sets (what a request's options are compared with)."""
    # num_batch is always set: Ollama starts llama-server with -b N -ub N, and without it
    # picks N itself (512 to 2048 by context and free memory, server/sched.go
    # automaticGenerationBatch), a compute buffer up to 4x the plan's. The plan's memory
    # depends on the micro-batch only, so N = the plan's ubatch.
    parameters: dict[str, Any] = {"num_ctx": config.ctx_per_agent, "num_batch": config.n_ubatch}
    if config.gpu_layers is not None:
        parameters["num_gpu"] = config.gpu_layers
    if config.main_gpu is not None:  # server/sched.go: a model that names its card is placed on it, spread or not
        parameters["main_gpu"] = config.main_gpu
    return parameters


def ollama_modelfile(config: ServerConfig, base_model: str, system: str | None = None) -> str:
    lines = [f"FROM {base_model}"]
    lines += [f"PARAMETER {key} {value}" for key, value in modelfile_parameters(config).items()]
    if system:
        # Ollama's Modelfile parser has no escapes: a triple-quoted value ends at the first
        # '"""' followed by white space (parser/parser.go, unquote).
        if '"""' in system:
            raise ConfigError('a system prompt containing """ cannot be written in a Modelfile (Ollama\'s parser '
                              'has no escapes); use the /api/create request, whose "system" field takes any text')
        lines.append('SYSTEM """' + system + '"""')
    return "\n".join(lines) + "\n"


def ollama_create_request(config: ServerConfig, name: str, base_model: str,
                          system: str | None = None, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Body of ``POST /api/create`` (JSON form, Ollama >= 0.5.5).

    ``files`` (file name -> ``sha256:`` digest of a blob uploaded to ``/api/blobs``) replaces
    ``from``: that is how ``ollama create`` sends a local GGUF.
    """
    source: dict[str, Any] = {"files": files} if files else {"from": base_model}
    body: dict[str, Any] = {"model": name, **source, "parameters": modelfile_parameters(config), "stream": False}
    if system:
        body["system"] = system
    return body


def ollama_rendering(config: ServerConfig, spec: ModelSpec, base_model: str, *, fit_margin_mib: int,
                     role: str | None = None) -> dict[str, Any]:
    """Everything Ollama needs for the plan, or the reason it cannot run it (then env/modelfile/request are None)."""
    name = ollama_model_name(spec, role)
    refused = ollama_refusal(config, spec)
    if refused:
        return {"model": name, "refused": refused, "env": None, "modelfile": None, "create_request": None}
    return {"model": name, "refused": None, "env": ollama_env(config, fit_margin_mib=fit_margin_mib),
            "modelfile": ollama_modelfile(config, base_model),
            "create_request": ollama_create_request(config, name, base_model)}
