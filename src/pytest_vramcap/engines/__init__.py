"""Stage 3, the engines: servers that serve the model, behind one protocol.

    base.py      the Server protocol, EngineEvidence (what verdicts read), ports and health checks
    process.py   a child process in its own group: fail-fast start, group kill, atexit backstop
    binary.py    finding llama-server and whether it has a GPU backend
    llamacpp.py  LlamaServer: llama-server started from a plan (the embedded default)
    attached.py  AttachedServer: any server by URL, never stopped by us
    ollama.py    OllamaServer: `ollama serve` started from the plan (or attached), model created, /api/ps read
    provision.py from a plan to a server: the engine, the model source it takes, the one place it is built
    logparse.py  what llama-server logs about memory, OOM and offload (shared with the verdicts)
"""

from __future__ import annotations

from .attached import AttachedServer
from .base import EngineEvidence, ServedModel, Server, free_port, healthy, port_in_use
from .binary import find_llama_server, has_gpu_backend
from .llamacpp import EngineOptions, LlamaServer
from .logparse import ServerLog, parse_server_log
from .ollama import OllamaServer, find_ollama
from .process import ManagedProcess, group_alive

__all__ = [
    "AttachedServer",
    "EngineEvidence",
    "EngineOptions",
    "LlamaServer",
    "ManagedProcess",
    "OllamaServer",
    "ServedModel",
    "Server",
    "ServerLog",
    "find_llama_server",
    "find_ollama",
    "free_port",
    "group_alive",
    "has_gpu_backend",
    "healthy",
    "parse_server_log",
    "port_in_use",
]
