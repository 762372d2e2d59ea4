"""Where a running server differs from the plan for the same model and profile: each difference a Finding, with
its evidence (what the server said, and where) and its fix (the flag, the environment variable, the Modelfile
line). A setting the server does not reveal is not guessed: it is left out, and the report says what was read."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from typing import Any

from ..defaults import DEFAULT_UBATCH, MIB
from ..planner.memory import estimate_memory
from ..planner.plan import Plan
from .observe import Observed

__all__ = ["Finding", "diagnose"]

_FOREVER_YEAR = 2100
"""An /api/ps expiry after this is Ollama's "never" (a negative keep_alive shows as the year 2318)."""


@dataclass(frozen=True)
class Finding:
    name: str
    summary: str
    evidence: tuple[str, ...]
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "evidence": list(self.evidence), "fix": self.fix}

    def render(self) -> str:
        lines = [f"[FINDING] {self.name}: {self.summary}", *(f"    - {line}" for line in self.evidence),
                 f"    fix: {self.fix}"]
        return "\n".join(lines)


def diagnose(plan: Plan, seen: Observed) -> list[Finding]:
    """Every difference between ``seen`` and ``plan`` that changes how many agents run at once, how long their
    conversations may grow, what the server holds in memory, or whether the model stays loaded."""
    return [finding for check in (_slots, _context, _kv_cache, _flash_attention, _micro_batch, _offload,
                                  _keep_alive, _eviction) if (finding := check(plan, seen)) is not None]


def _ollama(seen: Observed) -> bool:
    return seen.engine == "ollama"


def _where(seen: Observed, what: str) -> str:
    return f"{what} ({seen.flags_source})" if seen.flags_source else what


def _priced(plan: Plan, **changes: Any) -> str:
    """What the server's setting costs on the GPU beside the plan's."""
    other = estimate_memory(plan.spec, replace(plan.config, **changes), plan.profile)
    delta = (other.gpu.total - plan.memory.gpu.total) / MIB
    return f"{abs(delta):,.0f} MiB {'more' if delta > 0 else 'less'} on the GPU than planned"


def _slots(plan: Plan, seen: Observed) -> Finding | None:
    agents, slots = plan.config.parallel, seen.slots
    if slots is None or slots == agents:
        return None
    source = "/props total_slots" if seen.engine == "llama-server" else _where(seen, "the runner's -np")
    evidence = (f"{source}: {slots}; the plan: {agents} agents", _priced(plan, parallel=slots))
    if slots < agents:
        summary = f"{slots} slot(s) for the plan's {agents} agents: {agents - slots} of them wait for a slot"
    else:
        summary = f"{slots} slots where the plan has {agents}: more KV cache than planned"
    fix = (f"OLLAMA_NUM_PARALLEL={agents} for `ollama serve`, then restart it (a runner started before keeps its "
           f"slots; Ollama gives some architectures one slot whatever it says)" if _ollama(seen)
           else f"start llama-server with -np {agents} -c {agents * plan.config.ctx_per_agent}")
    return Finding("slots", summary, evidence, fix)


def _context(plan: Plan, seen: Observed) -> Finding | None:
    ctx, planned = seen.ctx_per_slot, plan.config.ctx_per_agent
    if ctx is None or ctx == planned:
        return None
    source = "/slots n_ctx" if seen.engine == "llama-server" else "/api/ps context_length"
    if ctx < planned:
        summary = f"each slot holds {ctx:,} tokens, the plan {planned:,}: an agent's conversation is refused or cut " \
                  f"past {ctx:,}"
    else:
        summary = f"each slot holds {ctx:,} tokens, the plan {planned:,}"
    evidence = (f"{source}: {ctx}; the plan: {planned} per agent", _priced(plan, ctx_per_agent=ctx))
    fix = (f"PARAMETER num_ctx {planned} in the Modelfile (or OLLAMA_CONTEXT_LENGTH={planned}); Ollama starts the "
           f"runner with -c num_ctx x OLLAMA_NUM_PARALLEL" if _ollama(seen)
           else f"-c {(seen.slots or plan.config.parallel) * planned} (llama-server's -c is the context of all "
                f"slots together: {planned} each)")
    return Finding("context", summary, evidence, fix)


def _kv_cache(plan: Plan, seen: Observed) -> Finding | None:
    if seen.flags is None:
        return None
    k = seen.flags.cache_type_k or "f16"
    v = seen.flags.cache_type_v or "f16"
    if (k, v) == (plan.config.cache_type_k, plan.config.cache_type_v):
        return None
    wanted = plan.config.cache_type_k
    return Finding("kv_cache", f"KV cache {k}/{v} where the plan has {wanted}",
                   (_where(seen, f"--cache-type-k {k} --cache-type-v {v}"),
                    _priced(plan, cache_type_k=k, cache_type_v=v, flash_attn=True)
                    if k in _KV_TYPES and v in _KV_TYPES else "its size is not priced: an unknown type"),
                   f"OLLAMA_KV_CACHE_TYPE={wanted} (needs OLLAMA_FLASH_ATTENTION=1 when not f16)" if _ollama(seen)
                   else f"--cache-type-k {wanted} --cache-type-v {wanted}")


_KV_TYPES = frozenset({"f16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"})
_ON, _OFF = frozenset({"on", "1", "true", "enabled"}), frozenset({"off", "0", "false", "disabled"})


def _flash_attention(plan: Plan, seen: Observed) -> Finding | None:
    if seen.flags is None or seen.flags.flash_attn is None:
        return None  # llama.cpp's default is auto: on where the GPU backend supports it
    value = seen.flags.flash_attn.lower()
    if (plan.config.flash_attn and value in _OFF) or (not plan.config.flash_attn and value in _ON):
        wanted = "on" if plan.config.flash_attn else "off"
        return Finding("flash_attn", f"flash attention {value} where the plan has it {wanted}",
                       (_where(seen, f"--flash-attn {value}"), _priced(plan, flash_attn=not plan.config.flash_attn)),
                       f"OLLAMA_FLASH_ATTENTION={'1' if plan.config.flash_attn else '0'}" if _ollama(seen)
                       else f"--flash-attn {wanted}")
    return None


def _micro_batch(plan: Plan, seen: Observed) -> Finding | None:
    if seen.flags is None:
        return None
    try:
        ubatch = int(seen.flags.ubatch) if seen.flags.ubatch is not None else DEFAULT_UBATCH
    except ValueError:
        return None
    if ubatch == plan.config.n_ubatch:
        return None
    wanted = plan.config.n_ubatch
    return Finding("batch", f"micro-batch {ubatch} where the plan has {wanted}: a different compute buffer",
                   (_where(seen, f"-ub {ubatch}"), _priced(plan, n_ubatch=ubatch, n_batch=max(ubatch, 2048))),
                   f"PARAMETER num_batch {wanted} in the Modelfile" if _ollama(seen) else f"-b {max(wanted, 2048)} "
                   f"-ub {wanted}")


def _offload(plan: Plan, seen: Observed) -> Finding | None:
    if _ollama(seen) and seen.size_mib and seen.vram_mib is not None and seen.vram_mib < seen.size_mib:
        share = round((seen.size_mib - seen.vram_mib) / seen.size_mib * 100)
        return Finding("cpu_offload", f"{share}% of the model is on the CPU (ollama ps shows it as CPU/GPU)",
                       (f"/api/ps: size {seen.size_mib:,.0f} MiB, size_vram {seen.vram_mib:,.0f} MiB",),
                       "fewer slots, a smaller num_ctx or a q8_0 KV cache, as `vramcap plan` prices them; or stop what "
                       "else holds the GPU")
    layers = seen.flags.gpu_layers if seen.flags is not None else None
    total = plan.memory.total_layers
    if layers is not None and layers.isdigit() and int(layers) < total:
        return Finding("cpu_offload", f"{layers} of {total} layers on the GPU: the rest run on the CPU",
                       (_where(seen, f"-ngl {layers}"),), "-ngl all (the plan puts every layer on the GPU)")
    return None


def _keep_alive(plan: Plan, seen: Observed) -> Finding | None:
    if not _ollama(seen) or not seen.expires_at:
        return None
    try:
        expires = datetime.datetime.fromisoformat(seen.expires_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if expires.year >= _FOREVER_YEAR:
        return None
    return Finding("keep_alive", f"the model unloads at {seen.expires_at} unless a request comes: agents that "
                                 f"pause longer than the keep-alive wait for a reload",
                   (f"/api/ps expires_at: {seen.expires_at}",),
                   "OLLAMA_KEEP_ALIVE=-1 for `ollama serve` (or keep_alive: -1 in the requests)")


def _eviction(plan: Plan, seen: Observed) -> Finding | None:
    if not _ollama(seen) or not seen.others:
        return None
    loaded = len(seen.others) + 1
    limit = seen.server_env.get("OLLAMA_MAX_LOADED_MODELS")
    if limit is not None and limit.isdigit() and int(limit) > loaded:
        return None
    said = f"OLLAMA_MAX_LOADED_MODELS={limit}" if limit is not None else \
        "OLLAMA_MAX_LOADED_MODELS not readable here (Ollama's default: 3 per GPU, fewer when VRAM runs out)"
    return Finding("eviction", f"{loaded - 1} other model(s) loaded beside it: loading one more, or one that does "
                               f"not fit beside them, unloads a model",
                   (*(f"/api/ps: {other}" for other in seen.others), said),
                   f"OLLAMA_MAX_LOADED_MODELS={loaded} and a plan for them together (`vramcap plan --model "
                   f"ROLE=SRC` for each)")
