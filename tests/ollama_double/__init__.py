"""A faithful Ollama double for tests: no Ollama binary can be installed on our machines.

``python -m tests.ollama_double serve`` behaves like ``ollama serve`` of Ollama >= 0.30
(v0.33.0-rc2, fb3076099, the newest stored): it reads the same environment, starts the
REAL llama-server exactly as llm/llama_server.go does, and answers Ollama's API with its
response shapes and status codes. Each behaviour names the Ollama file it copies.

What it simplifies (and says so): models are GGUF files in ``$OLLAMA_MODELS`` named
``<name>.gguf`` (no registry, no blobs); ``/api/pull`` only finds them; there is no
keep-alive expiry other than ``keep_alive: 0``; the CUDA-only batch rules of
server/sched.go apply only when ``VRAMCAP_OLLAMA_DOUBLE_CUDA=1``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def launcher(directory: Path) -> Path:
    """An executable ``directory/ollama`` that runs the double as the binary it stands in for.

    ``--tag`` puts ``directory`` on the double's command line, so a test can find (and
    check it stopped) the processes it started itself.
    """
    path = directory / "ollama"
    path.write_text(f"#!/bin/sh\nexec env PYTHONPATH={REPO} {sys.executable} -m tests.ollama_double \"$@\" "
                    f"--tag={directory}\n")
    path.chmod(0o755)
    return path
