"""The ``client_options`` verdict: what the app's own requests ask of Ollama, against the plan.

A native Ollama request carries runner options (``options.num_ctx``, ``num_batch``...) and a
``keep_alive``. Ollama compares the runner options with the loaded model's and reloads it when
any differs (server/sched.go ``needsReload``: api.Runner's NumCtx, NumBatch, NumGPU, MainGPU,
UseMMap, NumThread; a num_gpu below 0 never reloads), and a new num_ctx reloads it with
``num_ctx x OLLAMA_NUM_PARALLEL`` tokens of KV. llama-server ignores all of them, so a run on the
embedded engine would pass a plan the app thrashes on Ollama: a mismatch fails on every engine,
and the config Ollama would reload into is priced with the planner. A ``keep_alive`` of 0, or
shorter than the gap between two requests of one agent, unloads the model between turns. On an
Ollama engine a request's ``load_duration`` shows a load the moment it happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..defaults import MIB
from ..load.measure.record import RequestRecord
from ..load.proxy.ollama import keep_alive_s
from ..planner.memory import ServerConfig, estimate_memory
from ..planner.plan import Plan, fits_budget
from ..planner.render import modelfile_parameters
from .verdict import FAIL, NA, PASS, Verdict

__all__ = ["LOAD_WAIT_S", "client_options_verdict"]

LOAD_WAIT_S = 0.25
"""A ``load_duration`` above this is a model load, not the scheduler's few milliseconds of bookkeeping."""

_PRICED = ("num_ctx", "num_batch", "num_gpu")
"""The runner options that change what a reload costs in memory."""
_RELOADING = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")
_OLLAMA_DEFAULTS = {"num_batch": 512, "num_gpu": -1, "num_thread": 0, "draft_num_predict": 4}
"""api/types.go DefaultOptions().Runner: what a loaded runner has where the Modelfile sets nothing (main_gpu and
use_mmap stay unset: any value a request sets differs)."""
_MAX_LINES = 12

def _planned(config: ServerConfig, option: str) -> Any:
    """What the loaded runner has for a runner option: the plan's Modelfile, else Ollama's default (None: unset)."""
    return modelfile_parameters(config).get(option, _OLLAMA_DEFAULTS.get(option))


def _differs(plan: Plan, option: str, value: Any) -> bool:
    """Whether ``value`` makes Ollama reload the plan's model (server/sched.go needsReload)."""
    if option == "num_gpu" and isinstance(value, (int, float)) and value < 0:
        return False  # a num_gpu below 0 is "as loaded"
    if option == "num_ctx" and isinstance(value, int) and value > plan.spec.n_ctx_train > 0:
        value = plan.spec.n_ctx_train  # effectiveContext: capped at the training context before comparing
    return bool(value != _planned(plan.config, option))


def _priced(plan: Plan, asked: Mapping[str, Any]) -> str:
    """What Ollama would reload into for ``asked`` (num_ctx x parallel of KV...), priced by the planner."""
    config = plan.config
    changes: dict[str, Any] = {}
    if isinstance(asked.get("num_ctx"), int) and asked["num_ctx"] > 0:
        train = plan.spec.n_ctx_train
        changes["ctx_per_agent"] = min(asked["num_ctx"], train) if train > 0 else asked["num_ctx"]
    if isinstance(asked.get("num_batch"), int) and asked["num_batch"] > 0:
        changes["n_batch"] = changes["n_ubatch"] = asked["num_batch"]  # Ollama: -b N -ub N
    if isinstance(asked.get("num_gpu"), int) and asked["num_gpu"] >= 0:
        changes["gpu_layers"] = asked["num_gpu"]
    if not changes:
        return ""
    reloaded = replace(config, **changes)
    memory = estimate_memory(plan.spec, reloaded, plan.profile)
    fits = fits_budget(memory, plan.profile, plan.fit_margin_mib)
    what = ", ".join(f"{option} {asked[option]}" for option in _PRICED if option in asked)
    return (f"on Ollama that reloads the model with {what}: {reloaded.parallel} x {reloaded.ctx_per_agent} = "
            f"{reloaded.parallel * reloaded.ctx_per_agent:,} tokens of KV, {memory.gpu.total / MIB:,.0f} MiB at peak: "
            f"{'fits' if fits else 'does NOT fit'} {plan.profile.name} ({plan.profile.usable_mib:,} MiB usable, "
            f"{plan.fit_margin_mib} MiB margin)")


def _idle_unloads(records: Sequence[RequestRecord]) -> list[tuple[RequestRecord, Any, float]]:
    """Where the model would unload within one pass: each idle time between busy periods (no request of any agent
    in flight) longer than the keep_alive in force then, with the request that set it (Ollama keeps a runner's
    session duration from the last request that gave one: server/sched.go; before any, the plan's -1)."""
    unloads = []
    setter: RequestRecord | None = None
    busy_until: float | None = None
    for record in sorted(records, key=lambda record: record.t_send):
        if busy_until is not None and record.t_send > busy_until and setter is not None:
            value = (setter.client_options or {})["keep_alive"]
            seconds = keep_alive_s(value)
            idle = record.t_send - busy_until
            if seconds is not None and idle > seconds:
                unloads.append((setter, value, idle))
        if record.client_options is not None and "keep_alive" in record.client_options:
            setter = record
        end = record.t_last if record.t_last is not None else record.t_send
        busy_until = end if busy_until is None else max(busy_until, end)
    return unloads


def client_options_verdict(plan: Plan, passes: Iterable[Sequence[RequestRecord]]) -> Verdict:
    """Every request's Ollama options against the plan, over the records of each pass; the evidence names the
    agent, the request (its number in the run) and the value."""
    passes = [list(records) for records in passes]
    records = [record for pass_records in passes for record in pass_records]
    asked = [(index, record) for index, record in enumerate(records, 1) if record.client_options is not None]
    firsts = {id(min(pass_records, key=lambda record: record.t_send)) for pass_records in passes if pass_records}
    loads = [(index, record) for index, record in enumerate(records, 1)  # a pass's first: the harness's pause
             if record.load_s is not None and record.load_s > LOAD_WAIT_S and id(record) not in firsts]
    if not asked and not loads:
        return Verdict(name="client_options", outcome=NA,
                       summary="no request carried Ollama options (only Ollama's native API has them)")
    evidence: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    priced: set[str] = set()
    for index, record in asked:
        options = record.client_options or {}
        for option in _RELOADING:
            if option not in options or not _differs(plan, option, options[option]):
                continue
            key = (record.label, option, repr(options[option]))
            if key in seen:
                continue
            seen.add(key)
            planned = _planned(plan.config, option)
            evidence.append(f"{record.label} (request #{index}): {option} {options[option]!r}, the plan "
                            f"{'sets ' + repr(planned) if planned is not None else 'leaves it unset'}")
            price = _priced(plan, {key: options[key] for key in _PRICED if key in options}) \
                if option in _PRICED else ""
            if price and price not in priced:
                priced.add(price)
                evidence.append(price)
    number = {id(record): index for index, record in enumerate(records, 1)}
    for index, record in asked:  # 0: unloaded as the request ends with nothing else in flight (sched.go)
        value = (record.client_options or {}).get("keep_alive")
        if keep_alive_s(value) == 0 and (record.label, "keep_alive", repr(value)) not in seen:
            seen.add((record.label, "keep_alive", repr(value)))
            evidence.append(f"{record.label} (request #{index}): keep_alive {value!r}: the model unloads when a "
                            f"request ends with none other in flight")
    for pass_records in passes:
        for setter, value, idle in _idle_unloads(pass_records):
            key = (setter.label, "keep_alive", repr(value))
            if key not in seen:
                seen.add(key)
                evidence.append(f"{setter.label} (request #{number[id(setter)]}): keep_alive {value!r}: the model "
                                f"unloads in an idle time of {idle:.1f} s between requests")
    for index, record in loads:
        evidence.append(f"{record.label} (request #{index}) waited {record.load_s:.2f} s for a model load "
                        f"(Ollama's load_duration)")
    if evidence:
        summary = ("the app's requests ask Ollama for another config than the plan: it would reload the model"
                   if len(evidence) > len(loads) else "requests waited for a model load in the middle of a pass")
        shown = evidence[:_MAX_LINES] + ([f"... and {len(evidence) - _MAX_LINES} more"]
                                          if len(evidence) > _MAX_LINES else [])
        return Verdict(name="client_options", outcome=FAIL, evidence=tuple(shown), summary=summary)
    agents = sorted({record.label for _, record in asked})
    return Verdict(name="client_options", outcome=PASS,
                   summary=f"{len(asked)} request(s) of {', '.join(agents)} ask for what the plan serves")
