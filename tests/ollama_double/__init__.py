"""A faithful Ollama double for tests: no Ollama binary can be installed on our machines.

``python -m tests.ollama_double serve`` behaves like ``ollama serve`` of Ollama >= 0.30
(v0.33.0-rc2, fb3076099, the newest stored): it reads the same environment, starts the
REAL llama-server exactly as llm/llama_server.go does, and answers Ollama's API with its
response shapes and status codes. Each behaviour names the Ollama file it copies.

What it follows: keep_alive (the request's, a Go duration or seconds, negative forever, 0 at
once; else ``$OLLAMA_KEEP_ALIVE``, default 5m) sets the runner's session, whose idle timer starts
when its last request finishes and unloads it on expiry, with ``/api/ps`` ``expires_at`` the real
expiry (server/sched.go); a request whose runner options (num_ctx, num_batch, num_gpu, main_gpu,
use_mmap, num_thread, draft_num_predict) differ from the loaded ones reloads it (needsReload); an
/api/chat request becomes the llama-server body llm/llama_server.go llamaServerChatRequest builds
(DefaultOptions < the model's parameters < the request's options, num_predict bounded, tools,
format, think), its tool calls come back on the done chunk, ``stream: false`` gets one object
(options.py holds these rules).

What it simplifies (and says so): pulled models are read from ``$OLLAMA_MODELS`` in Ollama's own
layout (manifests and blobs: :func:`pull` puts one there), but there is no registry, so
``/api/pull`` only finds them; created models live in memory, not as manifests; up to
OLLAMA_MAX_LOADED_MODELS runners (default 3) are loaded, one per model file, and the next load
unloads one as sched.go findRunnerToUnload picks it, but no VRAM is predicted, so a model never
evicts another for lack of memory; an embedding model (its GGUF names ``pooling_type``) gets one
slot and ``--embedding``, and ``/api/embed`` and ``/v1/embeddings`` pass llama-server's vectors as
they come (no normalizing, no truncation to the context); the CUDA-only batch rules of
server/sched.go apply only when ``VRAMCAP_OLLAMA_DOUBLE_CUDA=1``. ``/api/generate`` with a prompt
sends ``[system?, user prompt]`` to llama-server's /v1/chat/completions (Ollama renders the template
and calls /completion: the same for a chat template), ``raw: true`` the prompt as is to /completion;
it answers without ``context`` (Ollama tokenizes its own rendered prompt for it) and refuses
``suffix``, ``template``, ``context`` and ``images``. Messages carry text and tool calls, not
images; no logprobs, no token-repeat abort, no context shift. ``/v1/chat/completions`` serves
streamed requests only and passes llama-server's OpenAI chunks through instead of rebuilding them
from Ollama's ChatResponse (so tool calls stream as llama-server sends them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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


def pull(store: Path, name: str, gguf: Path) -> Path:
    """Put ``gguf`` in an Ollama model store as ``ollama pull name`` leaves it: a blob named by its
    sha256 and a manifest under manifests/registry.ollama.ai/library (manifest/manifest.go
    WriteManifest). Returns the blob."""
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    blob = store / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(gguf, blob)
    except OSError:
        shutil.copyfile(gguf, blob)
    model, _, tag = name.partition(":")
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / model / (tag or "latest")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
             "size": gguf.stat().st_size}
    config = {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": f"sha256:{'0' * 64}",
              "size": 2}
    manifest.write_text(json.dumps({"schemaVersion": 2, "config": config, "layers": [layer],
                                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}))
    return blob
