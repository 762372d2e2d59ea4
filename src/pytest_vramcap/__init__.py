"""pytest-vramcap: capacity tests for multi-agent LLM serving on a fixed VRAM budget.

The data flows through one package per stage (docs/architecture.md)::

    model/ -> planner/ -> gpu/ -> engines/ -> load/ -> report/ -> plugin/     (cli/ and locust/ on top)

What the README documents is importable from here, loaded on first use so that
loading the pytest plugin does not pull numpy, gguf or NVML into every run::

    from pytest_vramcap import load_model, resolve_profile, make_plan, PlanRequest
    plan = make_plan(load_model("qwen2.5-14b:Q4_K_M"), resolve_profile("rtx4080"),
                     PlanRequest(agents=4, ctx_per_agent=8192))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engines.attached import AttachedServer
    from .engines.base import EngineEvidence, Server
    from .engines.binary import find_llama_server
    from .engines.llamacpp import EngineOptions, LlamaServer
    from .errors import (
        BadInputError,
        ConfigError,
        EngineError,
        EngineStartError,
        ModelSourceError,
        ProfileError,
        ScenarioError,
        ServerUnreachable,
        VramcapError,
    )
    from .load.measure.client import ChatClient, ChatRequest
    from .load.measure.metrics import summarize
    from .load.measure.record import RequestError, RequestRecord
    from .load.run.rounds import ScenarioRun
    from .load.run.steps import run_both
    from .load.scenario.schema import Scenario, load_scenario
    from .model.loader import load_model
    from .model.source import ModelSource, parse_model_source
    from .model.spec import ModelSpec
    from .model.synth import write_gguf
    from .planner.memory import MemoryBreakdown, ServerConfig, estimate_memory, kv_cache_bytes
    from .planner.output import format_plan
    from .planner.plan import Plan, PlanRequest
    from .planner.profiles import Profile, resolve_profile
    from .planner.resolve import plan_from_options
    from .planner.solver import make_plan
    from .plugin.assertions import assert_no_cpu_offload, assert_no_oom, assert_parallel_speedup, assert_slo
    from .report.verdicts import Verdict

# Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("BadInputError", "ConfigError", "EngineError", "EngineStartError", "ModelSourceError",
                     "ProfileError", "ScenarioError", "ServerUnreachable", "VramcapError"), "errors"),
    **dict.fromkeys(("ModelSource", "parse_model_source"), "model.source"),
    "load_model": "model.loader",
    "ModelSpec": "model.spec",
    "write_gguf": "model.synth",
    **dict.fromkeys(("MemoryBreakdown", "ServerConfig", "estimate_memory", "kv_cache_bytes"), "planner.memory"),
    "format_plan": "planner.output",
    **dict.fromkeys(("Plan", "PlanRequest"), "planner.plan"),
    **dict.fromkeys(("Profile", "resolve_profile"), "planner.profiles"),
    "plan_from_options": "planner.resolve",
    "make_plan": "planner.solver",
    "AttachedServer": "engines.attached",
    **dict.fromkeys(("EngineEvidence", "Server"), "engines.base"),
    "find_llama_server": "engines.binary",
    **dict.fromkeys(("EngineOptions", "LlamaServer"), "engines.llamacpp"),
    **dict.fromkeys(("ChatClient", "ChatRequest"), "load.measure.client"),
    **dict.fromkeys(("RequestError", "RequestRecord"), "load.measure.record"),
    "run_both": "load.run.steps",
    "ScenarioRun": "load.run.rounds",
    "summarize": "load.measure.metrics",
    **dict.fromkeys(("Scenario", "load_scenario"), "load.scenario.schema"),
    "Verdict": "report.verdicts",
    **dict.fromkeys(("assert_no_cpu_offload", "assert_no_oom", "assert_parallel_speedup", "assert_slo"),
                    "plugin.assertions"),
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - the public names, sorted, then the version
    "AttachedServer",
    "BadInputError",
    "ChatClient",
    "ChatRequest",
    "ConfigError",
    "EngineError",
    "EngineEvidence",
    "EngineOptions",
    "EngineStartError",
    "LlamaServer",
    "MemoryBreakdown",
    "ModelSource",
    "ModelSourceError",
    "ModelSpec",
    "Plan",
    "PlanRequest",
    "Profile",
    "ProfileError",
    "RequestError",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "Server",
    "ServerConfig",
    "ServerUnreachable",
    "Verdict",
    "VramcapError",
    "assert_no_cpu_offload",
    "assert_no_oom",
    "assert_parallel_speedup",
    "assert_slo",
    "estimate_memory",
    "find_llama_server",
    "format_plan",
    "kv_cache_bytes",
    "load_model",
    "load_scenario",
    "make_plan",
    "parse_model_source",
    "plan_from_options",
    "resolve_profile",
    "run_both",
    "summarize",
    "write_gguf",
    "__version__",
]
