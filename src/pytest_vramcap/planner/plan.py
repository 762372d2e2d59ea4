"""What a plan is asked (:class:`PlanRequest`) and what it answers (:class:`Plan`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..defaults import DEFAULT_FIT_MARGIN_MIB, DEFAULT_UBATCH, MAX_AGENTS, MIB
from ..errors import ConfigError
from ..model.spec import ModelSpec
from ..options import ROLE_OPTIONS, single_model_values
from ..types import KV_CACHE_TYPES, KvCacheType
from .memory import DeviceMemory, MemoryBreakdown, ServerConfig
from .profiles import Profile
from .throughput import DecodeEstimate, PrefillEstimate

__all__ = ["Alternative", "Plan", "PlanRequest", "budget_overrun_mib", "fits_budget", "overrun_mib", "tightest_card"]


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for; ``None`` agents or context means "solve for the largest"."""

    agents: int | None = None
    ctx_per_agent: int | None = None
    kv_cache: KvCacheType = "f16"
    flash_attn: bool = True
    ubatch: int = DEFAULT_UBATCH
    gpu_layers: int | None = None
    n_cpu_moe: int = 0
    fit_margin_mib: int = DEFAULT_FIT_MARGIN_MIB
    kv_unified: bool = False

    def __post_init__(self) -> None:
        # Ranges only: whether the KV type needs flash attention is ServerConfig's one check.
        if self.agents is not None and not 1 <= self.agents <= MAX_AGENTS:
            raise ConfigError(f"--agents must be between 1 and {MAX_AGENTS}, got {self.agents}")
        if self.ctx_per_agent is not None and self.ctx_per_agent < 1:
            raise ConfigError(f"--ctx-per-agent must be positive, got {self.ctx_per_agent}")
        if self.kv_cache not in KV_CACHE_TYPES:
            raise ConfigError(f"--kv-cache must be one of {', '.join(KV_CACHE_TYPES)}, got {self.kv_cache!r}")
        if self.ubatch < 1:
            raise ConfigError(f"--ubatch must be positive, got {self.ubatch}")
        if self.n_cpu_moe < 0:
            raise ConfigError(f"--n-cpu-moe must be >= 0, got {self.n_cpu_moe}")
        if self.fit_margin_mib < 0:
            raise ConfigError(f"--fit-margin must be >= 0, got {self.fit_margin_mib}")

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> PlanRequest:
        """The request from parsed option values, keyed by the option table's ``dest`` names.

        The CLI (argparse namespace) and the pytest plugin (options, ini, defaults)
        both come through here, so they cannot drift apart. Values of several models are refused here: plan
        them with :func:`~.resolve.plan_set_from_options`.
        """
        if any(isinstance(values.get(dest), list) for dest in ("model", *ROLE_OPTIONS)):
            values = single_model_values(dict(values))
        return cls(
            agents=values["agents"],
            ctx_per_agent=values["ctx_per_agent"],
            kv_cache=values["kv_cache"],
            flash_attn=values["flash_attn"] == "on",
            ubatch=values["ubatch"],
            gpu_layers=values["gpu_layers"],
            n_cpu_moe=values["n_cpu_moe"],
            fit_margin_mib=values["fit_margin"],
            kv_unified=bool(values["kv_unified"]),
        )


def budget_overrun_mib(memory: MemoryBreakdown, profile: Profile, margin_mib: int) -> float:
    """How far the plan is over what the card offers (<= 0: it fits), unrounded.

    Two limits: llama.cpp's --fit keeps ``margin_mib`` free beside what it measures at load,
    and the peak must fit the card. The pools that batches grow (``runtime_pool``: cuBLAS's,
    an MoE's expert matmuls', the no-FA copy of the KQ scores) come after fit's decision: at
    load they are out, at peak in.
    """
    if memory.devices:  # several cards: --fit keeps the margin on each, and the tightest card decides
        return max(overrun_mib([device], card.usable_mib, margin_mib)
                   for device, card in zip(memory.devices, profile.devices, strict=True))
    return overrun_mib([memory.gpu], profile.usable_mib, margin_mib)


def tightest_card(memory: MemoryBreakdown, profile: Profile, margin_mib: int) -> tuple[int, Profile, DeviceMemory]:
    """Several cards: the one furthest over (or least under) its budget, as (index, card, what it holds)."""
    index = max(range(len(memory.devices)),
                key=lambda card: overrun_mib([memory.devices[card]], profile.devices[card].usable_mib, margin_mib))
    return index, profile.devices[index], memory.devices[index]


def overrun_mib(parts: Sequence[DeviceMemory], usable_mib: int, margin_mib: int) -> float:
    """How far what ``parts`` hold on one card (one or several processes) is over ``usable_mib``: at load, what
    each process measured plus the one margin --fit keeps; at peak, every buffer, pools included."""
    at_fit = sum((part.total - part.runtime_pool) / MIB for part in parts) + margin_mib
    return max(at_fit, sum(part.total / MIB for part in parts)) - usable_mib


def fits_budget(memory: MemoryBreakdown, profile: Profile, margin_mib: int) -> bool:
    return budget_overrun_mib(memory, profile, margin_mib) <= 0


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
            "n_cpu_moe": self.config.n_cpu_moe,
            "total_mib": self.total_mib,
            "fits": self.fits,
            "aggregate_tps": round(self.decode.aggregate_tps, 1),
        }


@dataclass(frozen=True)
class Plan:
    spec: ModelSpec
    profile: Profile
    request: PlanRequest
    """What was asked: planning it again on another profile gives the same kind of plan."""
    config: ServerConfig
    memory: MemoryBreakdown
    decode: DecodeEstimate
    solved_for: str | None = None
    breaking_term: str | None = None
    alternatives: tuple[Alternative, ...] = ()
    notes: tuple[str, ...] = field(default=())
    prefill: PrefillEstimate | None = None
    """One agent's prompt of half a slot, prefilled alone (the context the decode estimate is priced at)."""

    @property
    def fit_margin_mib(self) -> int:
        return self.request.fit_margin_mib

    @property
    def total_mib(self) -> float:
        return round(self.memory.gpu.total / MIB, 2)

    def planned_by_card_mib(self) -> tuple[float, ...]:
        """What the server holds at peak on each card (one entry for one card), MiB."""
        return tuple(round(device.total / MIB, 2) for device in self.memory.by_card)

    @property
    def headroom_mib(self) -> float:
        """Memory left free on the GPU at peak (on several cards, on the tightest)."""
        if self.memory.devices:
            return round(min(card.usable_mib - device.total / MIB
                             for card, device in zip(self.profile.devices, self.memory.devices, strict=True)), 2)
        return round(self.profile.usable_mib - self.memory.gpu.total / MIB, 2)

    @property
    def fits(self) -> bool:
        # The same unrounded test the solver used, so a boundary plan cannot flip.
        return fits_budget(self.memory, self.profile, self.fit_margin_mib)

