"""Stage 2, the planner: from a model, a VRAM profile and a workload to a server config that fits.

    profiles.py    VRAM profiles: sizes, named GPUs, user TOML profiles, several cards (2x16gb)
    split.py       which card of several holds which layer (llama.cpp's layer split)
    memory.py      llama.cpp's memory model (pure functions): weights, KV, compute, overhead, per card
    throughput.py  decode and prefill speed, term by term, fitted on an H100
    plan.py        PlanRequest in, Plan out
    solver.py      check a config, or solve for the most agents / longest context that fits
    render.py      the plan as llama-server flags and Ollama env / Modelfile / /api/create
    output.py      the plan as the JSON contract and as text
    resolve.py     option values -> plan (shared by the CLI and the pytest plugin)
"""

from __future__ import annotations

from .memory import MemoryBreakdown, ServerConfig, estimate_memory, kv_cache_bytes
from .output import format_plan, plan_json
from .plan import Alternative, Plan, PlanRequest
from .profiles import Profile, load_user_profiles, named_profiles, resolve_profile
from .render import (
    llama_server_args,
    ollama_create_request,
    ollama_env,
    ollama_modelfile,
    ollama_refusal,
    ollama_rendering,
)
from .resolve import model_source_from_options, plan_from_options
from .solver import make_plan

__all__ = [
    "Alternative",
    "MemoryBreakdown",
    "Plan",
    "PlanRequest",
    "Profile",
    "ServerConfig",
    "estimate_memory",
    "format_plan",
    "kv_cache_bytes",
    "llama_server_args",
    "load_user_profiles",
    "make_plan",
    "model_source_from_options",
    "named_profiles",
    "ollama_create_request",
    "ollama_env",
    "ollama_modelfile",
    "ollama_refusal",
    "ollama_rendering",
    "plan_from_options",
    "plan_json",
    "resolve_profile",
]
