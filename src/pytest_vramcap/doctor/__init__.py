"""``vramcap doctor``: what a running setup really does, beside a plan for the same model and profile.

    observe.py   reach a llama-server or an Ollama and read what it runs (HTTP, the runner's command line)
    procfs.py    this machine's processes: who listens on a port, a process's argv and environment
    flags.py     llama-server's command line (and its LLAMA_ARG_* environment) as the settings it runs with
    findings.py  where what runs differs from the plan: each finding with its evidence and its fix
"""

from __future__ import annotations

from .findings import Finding, diagnose
from .observe import Observed, observe_llama_server, observe_ollama

__all__ = ["Finding", "Observed", "diagnose", "observe_llama_server", "observe_ollama"]
