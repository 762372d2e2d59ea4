"""Plans: check a server config against a profile, or solve for the largest one.

A config fits when its peak GPU memory plus llama.cpp's fit margin (1024 MiB,
``--fit-target``) stays within what the profile leaves usable. That margin is
what llama.cpp's ``--fit`` (on by default, also under Ollama >= 0.30) keeps
free; eating into it makes ``--fit`` move layers to the CPU instead. When a
config does not fit, the plan names the term that breaks it and prices the
alternatives: a quantized KV cache, fewer agents, a shorter context, or a
partial offload and what it costs in decode speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .errors import ConfigError
from .kvtypes import KV_CACHE_TYPES, UNQUANTIZED_KV_TYPES
from .memory import COMPUTE_MODEL_NOTE, KV_PAD, MIB, MemoryBreakdown, ServerConfig, estimate_memory
from .modelspec import ModelSpec
from .profiles import Profile
from .render import llama_server_args, ollama_create_request, ollama_env, ollama_modelfile
from .throughput import DecodeEstimate, estimate_decode

__all__ = ["PlanRequest", "Plan", "Alternative", "make_plan", "DEFAULT_FIT_MARGIN_MIB", "MAX_AGENTS"]

DEFAULT_FIT_MARGIN_MIB = 1024
MAX_AGENTS = 64
DEFAULT_CTX_PER_AGENT = 8192


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for; ``None`` agents or context means "solve for the largest"."""

    agents: int | None = None
    ctx_per_agent: int | None = None
    kv_cache: str = "f16"
    flash_attn: bool = True
    ubatch: int = 512
    gpu_layers: int | None = None
    fit_margin_mib: int = DEFAULT_FIT_MARGIN_MIB
    kv_unified: bool = False

    def __post_init__(self) -> None:
        if self.agents is not None and not 1 <= self.agents <= MAX_AGENTS:
            raise ConfigError(f"--agents must be between 1 and {MAX_AGENTS}, got {self.agents}")
        if self.ctx_per_agent is not None and self.ctx_per_agent < 1:
            raise ConfigError(f"--ctx-per-agent must be positive, got {self.ctx_per_agent}")
        if self.kv_cache not in KV_CACHE_TYPES:
            raise ConfigError(f"--kv-cache must be one of {', '.join(KV_CACHE_TYPES)}, got {self.kv_cache!r}")
        if self.kv_cache not in UNQUANTIZED_KV_TYPES and not self.flash_attn:
            raise ConfigError(f"--kv-cache {self.kv_cache} needs --flash-attn on (llama.cpp quantizes V only with FA)")
        if self.ubatch < 1:
            raise ConfigError(f"--ubatch must be positive, got {self.ubatch}")
        if self.fit_margin_mib < 0:
            raise ConfigError(f"--fit-margin must be >= 0, got {self.fit_margin_mib}")


@dataclass(frozen=True)
class Alternative:
    """A priced way out of a config that does not fit."""

    label: str
    config: ServerConfig
    total_mib: float
    fits: bool
    decode: DecodeEstimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "parallel": self.config.parallel,
            "ctx_per_agent": self.config.ctx_per_agent,
            "kv_cache": self.config.cache_type_k,
            "gpu_layers": self.config.gpu_layers,
            "total_mib": self.total_mib,
            "fits": self.fits,
            "aggregate_tps": round(self.decode.aggregate_tps, 1),
        }


@dataclass(frozen=True)
class Plan:
    spec: ModelSpec
    profile: Profile
    config: ServerConfig
    memory: MemoryBreakdown
    fit_margin_mib: int
    decode: DecodeEstimate
    solved_for: str | None = None
    breaking_term: str | None = None
    alternatives: tuple[Alternative, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def total_mib(self) -> float:
        return round(self.memory.gpu.total / MIB, 2)

    @property
    def headroom_mib(self) -> float:
        """Memory left free on the GPU at peak."""
        return round(self.profile.usable_mib - self.memory.gpu.total / MIB, 2)

    @property
    def fits(self) -> bool:
        # The same unrounded test the solver used, so a boundary plan cannot flip.
        return _fits_breakdown(self.memory, self.profile, self.fit_margin_mib)

    def to_dict(self, model_path: str | None = None) -> dict[str, Any]:
        config = self.config
        model_ref = model_path or self.spec.model_ref
        gpu = self.memory.gpu.mib()
        cpu = self.memory.cpu.mib()
        return {
            "model": {
                "name": self.spec.name,
                "source": self.spec.source,
                "arch": self.spec.arch,
                "file_type": self.spec.file_type,
                "n_layer": self.spec.n_layer,
                "n_ctx_train": self.spec.n_ctx_train,
                "weights_mib": round(self.spec.weights_bytes / MIB, 2),
            },
            "profile": self.profile.to_dict(),
            "config": {
                "parallel": config.parallel,
                "ctx_per_agent": config.ctx_per_agent,
                "ctx_total": config.ctx_total,
                "kv_cache": config.cache_type_k,
                "flash_attn": config.flash_attn,
                "ubatch": self.memory.sizing.n_ubatch,
                "gpu_layers": self.memory.gpu_layers,
                "total_layers": self.memory.total_layers,
                "kv_unified": config.kv_unified,
                "cells_per_agent": self.memory.sizing.cells_per_stream,
            },
            "memory": {
                "gpu": gpu,
                "cpu": {key: cpu[key] for key in ("model_mib", "context_mib", "compute_mib")},
                "usable_mib": self.profile.usable_mib,
                "fit_margin_mib": self.fit_margin_mib,
            },
            "fits": self.fits,
            "headroom_mib": self.headroom_mib,
            "solved_for": self.solved_for,
            "breaking_term": self.breaking_term,
            "alternatives": [alternative.to_dict() for alternative in self.alternatives],
            "throughput": {
                "single_stream_tps": round(self.decode.single_stream_tps, 1),
                "aggregate_tps": round(self.decode.aggregate_tps, 1),
                "per_agent_tps": round(self.decode.per_agent_tps, 1),
                "parallel_speedup": round(self.decode.parallel_speedup, 2),
            },
            "ollama": {
                "env": ollama_env(config, fit_margin_mib=self.fit_margin_mib),
                "modelfile": ollama_modelfile(config, model_ref),
                "create_request": ollama_create_request(config, f"{self.spec.name.split(':')[0]}-vramcap", model_ref),
            },
            "llama_server": {"args": llama_server_args(config, model_ref, fit_margin_mib=self.fit_margin_mib)},
            "notes": list(self.notes),
        }


def _fits_breakdown(memory: MemoryBreakdown, profile: Profile, margin: int) -> bool:
    return profile.usable_mib - memory.gpu.total / MIB >= margin


def _config(request: PlanRequest, agents: int, ctx: int, **changes: Any) -> ServerConfig:
    config = ServerConfig(
        parallel=agents,
        ctx_per_agent=ctx,
        cache_type_k=request.kv_cache,
        cache_type_v=request.kv_cache,
        flash_attn=request.flash_attn,
        n_ubatch=request.ubatch,
        gpu_layers=request.gpu_layers,
        kv_unified=request.kv_unified,
    )
    return replace(config, **changes) if changes else config


def _largest(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """Largest value in [lo, hi] for which the monotone ``fits`` holds."""
    if hi < lo or not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Planner:
    def __init__(self, spec: ModelSpec, profile: Profile, request: PlanRequest) -> None:
        self.spec, self.profile, self.request = spec, profile, request

    def memory(self, config: ServerConfig) -> MemoryBreakdown:
        return estimate_memory(self.spec, config, self.profile)

    def fits(self, config: ServerConfig) -> bool:
        return _fits_breakdown(self.memory(config), self.profile, self.request.fit_margin_mib)

    def max_ctx(self, agents: int, **changes: Any) -> int | None:
        steps = _largest(1, max(1, self.spec.n_ctx_train // KV_PAD),
                         lambda k: self.fits(_config(self.request, agents, k * KV_PAD, **changes)))
        return None if steps is None else steps * KV_PAD

    def max_agents(self, ctx: int, **changes: Any) -> int | None:
        return _largest(1, MAX_AGENTS, lambda n: self.fits(_config(self.request, n, ctx, **changes)))

    def max_gpu_layers(self, agents: int, ctx: int) -> int | None:
        return _largest(0, self.spec.n_layer + 1,
                        lambda n: self.fits(_config(self.request, agents, ctx, gpu_layers=n)))

    def decode(self, config: ServerConfig, memory: MemoryBreakdown) -> DecodeEstimate:
        # An agent's context fills as its conversation runs: price reads at half a slot.
        return estimate_decode(self.spec, memory, self.profile, config.parallel, config.ctx_per_agent // 2)

    def alternative(self, label: str, config: ServerConfig) -> Alternative:
        memory = self.memory(config)
        return Alternative(label, config, round(memory.gpu.total / MIB, 2),
                           _fits_breakdown(memory, self.profile, self.request.fit_margin_mib), self.decode(config, memory))

    def alternatives(self, config: ServerConfig) -> list[Alternative]:
        found = []
        agents, ctx = config.parallel, config.ctx_per_agent
        for kv in ("q8_0", "q4_0"):
            if config.cache_type_k != kv:
                quantized = replace(config, cache_type_k=kv, cache_type_v=kv, flash_attn=True)
                found.append(self.alternative(f"{kv} KV cache (flash attention on)", quantized))
        fewer = self.max_agents(ctx)
        if fewer and fewer < agents:
            found.append(self.alternative(f"{fewer} agent{'s' if fewer > 1 else ''} x {ctx} context",
                                          replace(config, parallel=fewer)))
        shorter = self.max_ctx(agents)
        if shorter and shorter < ctx:
            found.append(self.alternative(f"{agents} agents x {shorter} context", replace(config, ctx_per_agent=shorter)))
        layers = self.max_gpu_layers(agents, ctx)
        if layers is not None and layers < self.spec.n_layer + 1:
            found.append(self.alternative(
                f"partial offload: {layers}/{self.spec.n_layer + 1} layers on the GPU",
                replace(config, gpu_layers=layers)))
        return found

    def breaking_term(self, memory: MemoryBreakdown) -> str:
        over = memory.gpu.total / MIB + self.request.fit_margin_mib - self.profile.usable_mib
        gpu = memory.gpu
        fixed = (gpu.model + gpu.overhead) / MIB + self.request.fit_margin_mib
        if fixed > self.profile.usable_mib:
            return (f"model weights: {gpu.model / MIB:.0f} MiB plus {gpu.overhead / MIB:.0f} MiB CUDA overhead and the "
                    f"{self.request.fit_margin_mib} MiB margin exceed {self.profile.usable_mib} MiB before any context")
        # The weights fit on their own, so the growing terms break it: name the larger.
        name, size = max([("KV cache", gpu.context), ("compute buffer", gpu.compute)], key=lambda term: term[1])
        return f"{name}: {size / MIB:.0f} MiB; the plan is {over:.0f} MiB over the budget"


def make_plan(spec: ModelSpec, profile: Profile, request: PlanRequest) -> Plan:
    """Check the requested config, or solve for the largest agents / context that fits."""
    planner = _Planner(spec, profile, request)
    notes = [COMPUTE_MODEL_NOTE, f"overhead: {profile.overhead_source}"]
    solved_for = None
    agents, ctx = request.agents, request.ctx_per_agent
    if ctx is not None and ctx > spec.n_ctx_train:
        notes.append(f"ctx_per_agent {ctx} exceeds the model's training context {spec.n_ctx_train}")
    if request.gpu_layers is not None and request.gpu_layers > spec.n_layer + 1:
        raise ConfigError(f"--gpu-layers {request.gpu_layers} exceeds the model's {spec.n_layer + 1} layers")
    if agents is None and ctx is None:
        ctx = min(DEFAULT_CTX_PER_AGENT, spec.n_ctx_train)
        notes.append(f"no --agents or --ctx-per-agent: solved for agents at {ctx} context each")
    if agents is None:
        assert ctx is not None
        solved_for = "agents"
        agents = planner.max_agents(ctx) or 1
    elif ctx is None:
        solved_for = "ctx_per_agent"
        ctx = planner.max_ctx(agents) or KV_PAD
    config = _config(request, agents, ctx)
    memory = planner.memory(config)
    fits = _fits_breakdown(memory, profile, request.fit_margin_mib)
    breaking = None if fits else planner.breaking_term(memory)
    alternatives = () if fits else tuple(planner.alternatives(config))
    if not memory.full_offload:
        notes.append(f"partial offload: {memory.gpu_layers}/{memory.total_layers} layers on the GPU")
    return Plan(spec, profile, config, memory, request.fit_margin_mib, planner.decode(config, memory),
                solved_for, breaking, alternatives, tuple(notes))
