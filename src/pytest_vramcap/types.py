"""Closed sets of values, as ``Literal`` types with their runtime tuples.

Import-free, so option parsing can check choices without loading the planner.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "EMULATE_MODES",
    "ENGINE_CHOICES",
    "FAILURE_KINDS",
    "GATE_METRICS",
    "KV_CACHE_TYPES",
    "ON_OFF",
    "RUN_MODES",
    "SERVED_ENGINES",
    "TOKENIZER_KINDS",
    "UNQUANTIZED_KV_TYPES",
    "WEIGHTS_MODES",
    "EmulateMode",
    "EngineChoice",
    "EngineKind",
    "FailureKind",
    "GateMetric",
    "KvCacheType",
    "OnOff",
    "Outcome",
    "RunMode",
    "TokenizerKind",
    "WeightsMode",
]

KvCacheType = Literal["f16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
"""What llama-server accepts for ``--cache-type-k/-v`` (Ollama documents f16, q8_0 and q4_0)."""
KV_CACHE_TYPES: tuple[KvCacheType, ...] = get_args(KvCacheType)
UNQUANTIZED_KV_TYPES: tuple[KvCacheType, ...] = ("f16", "bf16", "f32")

EngineKind = Literal["llamacpp", "ollama", "url"]
"""Which server a pytest run uses: the embedded llama-server, Ollama, or any URL."""
EngineChoice = Literal["auto", "llamacpp", "ollama", "url"]
"""``--vramcap-engine``: ``auto`` resolves to ``url`` when a server URL is given, else ``llamacpp``."""
ENGINE_CHOICES: tuple[EngineChoice, ...] = get_args(EngineChoice)
SERVED_ENGINES: tuple[EngineKind, ...] = ("llamacpp", "ollama")
"""The engines vramcap starts itself (``vramcap serve --engine``)."""

EmulateMode = Literal["auto", "on", "off"]
"""Whether a bigger GPU is made to look like the profile's card with a VRAM ballast."""
EMULATE_MODES: tuple[EmulateMode, ...] = get_args(EmulateMode)

OnOff = Literal["on", "off"]
ON_OFF: tuple[OnOff, ...] = get_args(OnOff)

Outcome = Literal["pass", "fail", "n/a"]
"""A verdict's outcome; only ``fail`` fails a test."""

RunMode = Literal["sequential", "parallel"]
RUN_MODES: tuple[RunMode, ...] = get_args(RunMode)

WeightsMode = Literal["random", "zeros", "sparse"]
"""What a synthetic GGUF's data region holds."""
WEIGHTS_MODES: tuple[WeightsMode, ...] = get_args(WeightsMode)

TokenizerKind = Literal["real", "stand-in"]
"""A synthetic GGUF's tokenizer: its family's real one (llama.cpp's vocab files), or the byte stand-in."""
TOKENIZER_KINDS: tuple[TokenizerKind, ...] = get_args(TokenizerKind)

GateMetric = Literal["speedup", "seq_wall", "par_wall", "ttft_p50", "ttft_p95", "tpot_p50", "tpot_p95",
                     "output_tps", "peak_vram"]
"""What the regression gate compares against a baseline (report/snapshot.py defines each)."""
GATE_METRICS: tuple[GateMetric, ...] = get_args(GateMetric)

FailureKind = Literal["queue_full", "context_overflow", "oom", "server_error", "client_error", "timeout", "connection",
                      "protocol", "no_output", "graph_error", "internal"]
"""Why a request (or a graph invocation) failed, as one countable kind: load/measure/failures.py says which
answer is which. ``graph_error`` is a user's graph that raised; ``internal`` a bug of vramcap's own, never
booked on the server."""
FAILURE_KINDS: tuple[FailureKind, ...] = get_args(FailureKind)
