"""pytest-vramcap: capacity tests for multi-agent LLM serving on a fixed VRAM budget.

The planner is importable without pytest plugins or a GPU::

    from pytest_vramcap import load_model, resolve_profile, make_plan, PlanRequest
    plan = make_plan(load_model("qwen2.5-14b:Q4_K_M"), resolve_profile("rtx4080"),
                     PlanRequest(agents=4, ctx_per_agent=8192))
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names and the module that defines each. Imported on first use so that
# loading the pytest plugin does not pull numpy and gguf into every test run.
_EXPORTS = {
    "BadInputError": "errors",
    "ConfigError": "errors",
    "ModelSourceError": "errors",
    "ProfileError": "errors",
    "VramcapError": "errors",
    "MemoryBreakdown": "memory",
    "ServerConfig": "memory",
    "estimate_memory": "memory",
    "kv_cache_bytes": "memory",
    "ModelSpec": "modelspec",
    "load_model": "modelspec",
    "spec_from_gguf": "modelspec",
    "spec_from_ollama_show": "modelspec",
    "spec_from_shape": "modelspec",
    "Plan": "planner",
    "PlanRequest": "planner",
    "make_plan": "planner",
    "Profile": "profiles",
    "resolve_profile": "profiles",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [*sorted(_EXPORTS), "__version__"]
