"""Engines: processes that serve the model (embedded llama-server, attach by URL)."""

from __future__ import annotations

from .binary import find_llama_server, has_gpu_backend
from .llamacpp import AttachedServer, EngineOptions, LlamaServer, free_port
from .process import ManagedProcess, group_alive

__all__ = [
    "AttachedServer",
    "EngineOptions",
    "LlamaServer",
    "ManagedProcess",
    "find_llama_server",
    "free_port",
    "group_alive",
    "has_gpu_backend",
]
