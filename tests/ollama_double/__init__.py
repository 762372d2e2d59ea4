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
