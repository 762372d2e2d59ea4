"""Solve a plan: check a server config against a profile, or find the largest one that fits.

A config fits when its peak GPU memory plus llama.cpp's fit margin (``--fit-target``)
stays within what the profile leaves usable. That margin is what llama.cpp's
``--fit`` (on by default, also under Ollama >= 0.30) keeps free; eating into it
makes ``--fit`` move layers to the CPU instead. When a config does not fit, the
plan names the term that breaks it and prices the alternatives: a quantized KV
cache, fewer agents, a shorter context, or a partial offload and what it costs
in decode speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..defaults import DEFAULT_BATCH, DEFAULT_CTX_PER_AGENT, MAX_AGENTS, MIB
from ..errors import ConfigError
from ..model.spec import ModelSpec
from .memory import COMPUTE_MODEL_NOTE, KV_PAD, MemoryBreakdown, ServerConfig, estimate_memory
from .plan import Alternative, Plan, PlanRequest, budget_overrun_mib, fits_budget, tightest_card
from .profiles import Profile, several_cards
from .split import proportional_counts
from .throughput import DecodeEstimate, PrefillEstimate, estimate_decode, estimate_prefill

__all__ = ["largest_satisfying", "make_plan", "placed_on_card", "with_split"]


def _config(request: PlanRequest, agents: int, ctx: int, *, encoder: bool = False, **changes: Any) -> ServerConfig:
    # An encoder (BERT) reads each input whole in one micro-batch: llama-server refuses an input longer than
    # -ub ("input is too large to process. increase the physical batch size"), so -b and -ub are the context.
    ubatch = max(request.ubatch, ctx) if encoder else request.ubatch
    config = ServerConfig(
        parallel=agents,
        ctx_per_agent=ctx,
        cache_type_k=request.kv_cache,
        cache_type_v=request.kv_cache,
        flash_attn=request.flash_attn,
        n_ubatch=ubatch,
        n_batch=max(DEFAULT_BATCH, ubatch),
        gpu_layers=request.gpu_layers,
        n_cpu_moe=request.n_cpu_moe,
        kv_unified=request.kv_unified,
    )
    return replace(config, **changes) if changes else config


def largest_satisfying(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
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


def _smallest(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """Smallest value in [lo, hi] for which the monotone ``fits`` holds (true from some value on)."""
    if hi < lo or not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class _Solver:
    def __init__(self, spec: ModelSpec, profile: Profile, request: PlanRequest) -> None:
        self.spec, self.profile, self.request = spec, profile, request

    def config(self, agents: int, ctx: int, **changes: Any) -> ServerConfig:
        return _config(self.request, agents, ctx, encoder=self.spec.encoder_only, **changes)

    def memory(self, config: ServerConfig) -> MemoryBreakdown:
        return estimate_memory(self.spec, config, self.profile)

    def fits(self, config: ServerConfig) -> bool:
        return fits_budget(self.memory(config), self.profile, self.request.fit_margin_mib)

    def max_ctx(self, agents: int, **changes: Any) -> int | None:
        steps = largest_satisfying(1, max(1, self.spec.n_ctx_train // KV_PAD),
                         lambda k: self.fits(self.config(agents, k * KV_PAD, **changes)))
        return None if steps is None else steps * KV_PAD

    def max_agents(self, ctx: int, **changes: Any) -> int | None:
        return largest_satisfying(1, MAX_AGENTS, lambda n: self.fits(self.config(n, ctx, **changes)))

    def max_gpu_layers(self, agents: int, ctx: int) -> int | None:
        return largest_satisfying(0, self.spec.n_layer + 1,
                        lambda n: self.fits(self.config(agents, ctx, gpu_layers=n)))

    def min_n_cpu_moe(self, agents: int, ctx: int) -> int | None:
        """Fewest layers whose expert weights must go to the CPU (``--n-cpu-moe``) for the config to fit."""
        return _smallest(1, self.spec.n_layer, lambda n: self.fits(self.config(agents, ctx, n_cpu_moe=n)))

    def alternative(self, label: str, config: ServerConfig) -> Alternative:
        memory = self.memory(config)
        return Alternative(label, config, round(memory.gpu.total / MIB, 2),
                           fits_budget(memory, self.profile, self.request.fit_margin_mib),
                           speeds(self.spec, config, self.profile, memory)[0])

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
            found.append(self.alternative(f"{agents} agents x {shorter} context",
                                          replace(config, ctx_per_agent=shorter)))
        layers = self.max_gpu_layers(agents, ctx)
        if layers is not None and layers < self.spec.n_layer + 1:
            found.append(self.alternative(
                f"partial offload: {layers}/{self.spec.n_layer + 1} layers on the GPU",
                replace(config, gpu_layers=layers)))
        if self.spec.n_expert and config.n_cpu_moe < self.spec.n_layer:
            moe = self.min_n_cpu_moe(agents, ctx)
            if moe is not None and moe > config.n_cpu_moe:
                label = f"expert weights of the first {moe} layers on the CPU (--n-cpu-moe {moe})"
                found.append(self.alternative(label, replace(config, n_cpu_moe=moe)))
        return found

    def breaking_term(self, memory: MemoryBreakdown) -> str:
        over = budget_overrun_mib(memory, self.profile, self.request.fit_margin_mib)
        gpu, usable, where = memory.gpu, self.profile.usable_mib, ""
        if memory.devices:  # several cards: the tightest one breaks it
            index, card, gpu = tightest_card(memory, self.profile, self.request.fit_margin_mib)
            usable, where = card.usable_mib, f"card {index} ({card.name}): "
        at_load = (gpu.overhead - gpu.runtime_pool) / MIB  # the CUDA context: what --fit finds taken
        fixed = gpu.model / MIB + at_load + self.request.fit_margin_mib
        if fixed > usable:
            return (f"{where}model weights: {gpu.model / MIB:.0f} MiB plus {at_load:.0f} MiB CUDA overhead "
                    f"and the {self.request.fit_margin_mib} MiB margin exceed {usable} MiB before any context")
        # The weights fit on their own, so the growing terms break it: name the larger.
        name, size = max([("KV cache", gpu.context), ("compute buffer", gpu.compute)], key=lambda term: term[1])
        return f"{where}{name}: {size / MIB:.0f} MiB; the plan is {over:.0f} MiB over the budget"


def make_plan(spec: ModelSpec, profile: Profile, request: PlanRequest) -> Plan:
    """Check the requested config, or solve for the largest agents / context that fits."""
    solver = _Solver(spec, profile, request)
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
        agents = solver.max_agents(ctx) or 1
    elif ctx is None:
        solved_for = "ctx_per_agent"
        ctx = solver.max_ctx(agents) or KV_PAD
    config = _config(request, agents, ctx, encoder=spec.encoder_only, embedding=spec.embedding)
    memory = solver.memory(config)
    holders = [card for card, count in enumerate(memory.layer_split) if count]
    if len(holders) == 1:  # several cards, and the best split leaves all but one empty: run on that one alone
        config = replace(config, main_gpu=holders[0])
        memory = solver.memory(config)
    fits = fits_budget(memory, profile, request.fit_margin_mib)
    breaking = None if fits else solver.breaking_term(memory)
    alternatives = () if fits else tuple(solver.alternatives(config))
    if not memory.full_offload:
        notes.append(f"partial offload: {memory.gpu_layers}/{memory.total_layers} layers on the GPU")
    if request.n_cpu_moe:
        n = request.n_cpu_moe
        notes.append(f"--n-cpu-moe {n}: expert weights of the first {n} layers on the CPU" if spec.n_expert
                     else f"--n-cpu-moe {n} has no effect: the model has no experts")
    if config.main_gpu is None and memory.layer_split and memory.gpu_layers:
        config = replace(config, tensor_split=memory.layer_split)  # several cards: the split counted is rendered
    notes += _placement_notes(spec, config, profile, request.fit_margin_mib)
    decode, prefill = speeds(spec, config, profile, memory)
    return Plan(spec, profile, request, config, memory, decode, solved_for, breaking, alternatives, tuple(notes),
                prefill)


def speeds(spec: ModelSpec, config: ServerConfig, profile: Profile,
           memory: MemoryBreakdown) -> tuple[DecodeEstimate, PrefillEstimate | None]:
    """Decode at half a slot of context (an agent's conversation fills as it runs) and the prefill of a prompt of
    half a slot; on several cards at their speeds weighted by what each holds. No prefill for a profile that names
    no card (its rate scales with the SM count, which such a profile lacks), nor for an MoE: its prefill ran 1.3x to
    1.9x slower than the dense terms price it, and 4.5x faster with --n-cpu-moe (docs/throughput.md)."""
    if memory.devices:
        profile = several_cards(profile.name, profile.devices, [d.model + d.context for d in memory.devices])
    decode = estimate_decode(spec, config, profile, config.ctx_per_agent // 2)
    if not profile.sm_count or spec.n_expert:
        return decode, None
    return decode, estimate_prefill(spec, config, profile, max(1, config.ctx_per_agent // 2))


SPLIT_NOTE = "layer split over"
FREE_SPLIT_NOTE = "without -ts (Ollama)"
ALONE_NOTE = "on card"
PLACEMENT_NOTES = (SPLIT_NOTE, FREE_SPLIT_NOTE, ALONE_NOTE)
"""How the notes about where a model runs on several cards begin: a plan placed again drops them for new ones."""


def _placement_notes(spec: ModelSpec, config: ServerConfig, profile: Profile, margin_mib: int) -> list[str]:
    """Where a model runs on several cards: one card alone, or the split and what Ollama's own split would do."""
    if config.main_gpu is not None:
        card = config.main_gpu
        return [f"{ALONE_NOTE} {card} ({profile.devices[card].name}) alone: -sm none -mg {card}"]
    if not config.tensor_split:
        return []
    counts = config.tensor_split
    return [f"{SPLIT_NOTE} {len(profile.devices)} cards ({', '.join(d.name for d in profile.devices)}): "
            f"{'/'.join(map(str, counts))} layers (-ts); their compute buffers and pipeline copies are estimated "
            f"from llama.cpp's source, not yet measured on several cards",
            _free_memory_split_note(spec, config, profile, margin_mib)]


def _free_memory_split_note(spec: ModelSpec, config: ServerConfig, profile: Profile, margin_mib: int) -> str:
    """What a server started without -ts gets (Ollama passes none): llama.cpp splits by each card's free memory,
    and --fit keeps that split when every card meets its margin (docs/sources/multi-gpu.md sections 1.1 and 4)."""
    ngl = sum(config.tensor_split)
    counts = proportional_counts(ngl, [card.usable_mib for card in profile.devices])
    if counts == config.tensor_split:
        return f"{FREE_SPLIT_NOTE} llama.cpp splits by free memory: the same {'/'.join(map(str, counts))} layers"
    memory = estimate_memory(spec, replace(config, tensor_split=counts), profile)
    over = budget_overrun_mib(memory, profile, margin_mib)
    verdict = ("fits too" if over <= 0 else
               f"leaves a card {over:,.0f} MiB short: --fit then moves layers, toward the CPU if no card has room")
    return f"{FREE_SPLIT_NOTE} llama.cpp splits by free memory: {'/'.join(map(str, counts))} layers, which {verdict}"


def _placed(plan: Plan, config: ServerConfig) -> Plan:
    """``plan`` with another placement on its several cards: the memory, speeds and notes that placement gives."""
    memory = estimate_memory(plan.spec, config, plan.profile)
    decode, prefill = speeds(plan.spec, config, plan.profile, memory)
    notes = [note for note in plan.notes if not note.startswith(PLACEMENT_NOTES)]
    notes += _placement_notes(plan.spec, config, plan.profile, plan.fit_margin_mib)
    return replace(plan, config=config, memory=memory, decode=decode, prefill=prefill, notes=tuple(notes))


def with_split(plan: Plan, counts: tuple[int, ...]) -> Plan:
    """``plan`` on its several cards with the layer counts ``counts`` (``-ts``)."""
    return _placed(plan, replace(plan.config, tensor_split=counts, main_gpu=None))


def placed_on_card(plan: Plan, card: int) -> Plan:
    """``plan``, made for several cards, served by one of them alone (``-sm none -mg card``): its memory there and
    that card's speed. Whether it fits beside the other models is the caller's to judge (:mod:`.modelset`)."""
    return _placed(plan, replace(plan.config, main_gpu=card, tensor_split=()))
