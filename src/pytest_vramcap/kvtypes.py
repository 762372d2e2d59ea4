"""KV cache types, kept free of imports so the pytest plugin can validate options cheaply."""

from __future__ import annotations

__all__ = ["KV_CACHE_TYPES", "UNQUANTIZED_KV_TYPES"]

# What llama-server accepts for --cache-type-k/-v (Ollama's OLLAMA_KV_CACHE_TYPE
# documents f16, q8_0 and q4_0).
KV_CACHE_TYPES: tuple[str, ...] = ("f16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
UNQUANTIZED_KV_TYPES: tuple[str, ...] = ("f16", "bf16", "f32")
