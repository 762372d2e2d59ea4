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

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..defaults import MIB
from ..load.measure.record import RequestRecord
from ..planner.memory import ServerConfig, estimate_memory
from ..planner.plan import Plan, fits_budget
from ..planner.render import modelfile_parameters
from .verdict import FAIL, NA, PASS, Verdict

__all__ = ["LOAD_WAIT_S", "client_options_verdict", "keep_alive_s"]

LOAD_WAIT_S = 0.25
"""A ``load_duration`` above this is a model load, not the scheduler's few milliseconds of bookkeeping."""

_PRICED = ("num_ctx", "num_batch", "num_gpu")
"""The runner options that change what a reload costs in memory."""
_RELOADING = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")

_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_s(value: Any) -> float | None:
    """A ``keep_alive`` in seconds as Ollama reads it (api/types.go Duration.UnmarshalJSON: a number of seconds, or
    a string for Go's time.ParseDuration such as ``"5m"`` or ``"1h30m"``); below 0 is forever (``inf``); None where
    Ollama would refuse it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        body = text.lstrip("+-")
        if body != "0" and _DURATION.fullmatch(body) is None:
            return None
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in _DURATION_PART.findall(body))
        seconds = -seconds if text.startswith("-") else seconds
    else:
        return None
    return float("inf") if seconds < 0 else seconds


def _planned(config: ServerConfig, option: str) -> Any:
    """What the plan's Modelfile sets for a runner option (None: left to Ollama, as a request that omits it)."""
    return modelfile_parameters(config).get(option)


def _differs(option: str, value: Any, planned: Any) -> bool:
    if option == "num_gpu" and isinstance(value, (int, float)) and value < 0:
        return False  # needsReload: a num_gpu below 0 is "as loaded"
    return bool(value != planned)


def _priced(plan: Plan, asked: Mapping[str, Any]) -> str:
    """What Ollama would reload into for ``asked`` (num_ctx x parallel of KV...), priced by the planner."""
    config = plan.config
    changes: dict[str, Any] = {}
    if isinstance(asked.get("num_ctx"), int) and asked["num_ctx"] > 0:
        changes["ctx_per_agent"] = asked["num_ctx"]
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


def _gaps_s(passes: Iterable[Sequence[RequestRecord]]) -> dict[str, float]:
    """The longest idle time between two consecutive requests of each agent (label) within a pass (the time between
    passes is the harness's, not the app's)."""
    gaps: dict[str, float] = {}
    for records in passes:
        by_label: dict[str, list[RequestRecord]] = {}
        for record in records:
            by_label.setdefault(record.label, []).append(record)
        for label, mine in by_label.items():
            mine.sort(key=lambda record: record.t_send)
            for before, after in itertools.pairwise(mine):
                if before.t_last is not None:
                    gaps[label] = max(gaps.get(label, 0.0), after.t_send - before.t_last)
    return gaps


def client_options_verdict(plan: Plan, passes: Iterable[Sequence[RequestRecord]]) -> Verdict:
    """Every request's Ollama options against the plan, over the records of each pass; the evidence names the
    agent, the request (its number in the run) and the value."""
    passes = [list(records) for records in passes]
    records = [record for pass_records in passes for record in pass_records]
    asked = [(index, record) for index, record in enumerate(records, 1) if record.client_options is not None]
    loads = [(index, record) for index, record in enumerate(records, 1)
             if record.load_s is not None and record.load_s > LOAD_WAIT_S]
    if not asked and not loads:
        return Verdict(name="client_options", outcome=NA,
                       summary="no request carried Ollama options (only Ollama's native API has them)")
    evidence: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    priced: set[str] = set()
    for index, record in asked:
        options = record.client_options or {}
        for option in _RELOADING:
            if option not in options or not _differs(option, options[option], _planned(plan.config, option)):
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
    gaps = _gaps_s([[record for record in pass_records if record.client_options is not None]
                    for pass_records in passes])
    for index, record in asked:
        if "keep_alive" not in (record.client_options or {}):
            continue
        value = (record.client_options or {})["keep_alive"]
        seconds = keep_alive_s(value)
        gap = gaps.get(record.label, 0.0)
        if seconds is not None and (seconds == 0 or seconds < gap):
            key = (record.label, "keep_alive", repr(value))
            if key not in seen:
                seen.add(key)
                why = "the model unloads after every request" if seconds == 0 else \
                    f"the model unloads between its requests (up to {gap:.1f} s apart)"
                evidence.append(f"{record.label} (request #{index}): keep_alive {value!r}: {why}")
    for index, record in loads:
        evidence.append(f"{record.label} (request #{index}) waited {record.load_s:.2f} s for a model load "
                        f"(Ollama's load_duration)")
    if evidence:
        return Verdict(name="client_options", outcome=FAIL, evidence=tuple(evidence),
                       summary="the app's requests ask Ollama for another config than the plan: it would reload "
                               "the model")
    agents = sorted({record.label for _, record in asked})
    return Verdict(name="client_options", outcome=PASS,
                   summary=f"{len(asked)} request(s) of {', '.join(agents)} ask for what the plan serves")
