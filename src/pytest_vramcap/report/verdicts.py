"""The verdicts, each with the evidence that decided it.

* ``oom``              the server could not allocate, or died: the plan's prediction,
                       load failures, OOM lines in the log, a dead process, OOM errors in answers.
* ``cpu_offload``      weights or KV left the GPU on a GPU run: layers ("offloaded N/M"),
                       CPU KV buffers, ``--fit`` overflow (MoE experts), weights the plan
                       put on the GPU found in host memory (engines/judge.py).
* ``served_as_planned`` the engine reports the planned context per slot and no reload
                       mid-run (Ollama's /api/ps); n/a for llama-server, which runs the plan's flags.
* ``client_options``   the Ollama options and keep_alive of the app's own requests match the plan
                       (report/client_options.py); n/a when no request carried any.
* ``output_budget``    every request of a graph stopped at the output limit it asked for (a field its engine
                       drops leaves it unbounded: report/output_budget.py); n/a for the YAML runner.
* ``slots``            the server has a slot for every agent of the widest step: decided
                       by the plan, not by a clock (n/a for a graph that made no recorded request).
* ``context``          every agent's conversation fits its slot at every turn: predicted for a scenario of steps,
                       observed for every run (report/conversation.py).
* ``prompt_cache``     later turns were served from the prompt cache, at least the scenario's share of the
                       conversation so far: catches slot thrash (report/conversation.py).
* ``parallel_speedup`` the median over interleaved rounds of sequential wall time /
                       parallel wall time reached the minimum.
* ``slo:<objective>``  one per latency objective (``slo:ttft_p95_s``...), over the parallel passes.

A verdict is ``pass``, ``fail`` or ``n/a`` (it cannot apply: no GPU to offload
from, no minimum set); only ``fail`` fails a test. The engine side of every
verdict comes from one place, :meth:`Server.evidence() <pytest_vramcap.engines.base.Server.evidence>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..defaults import MIB
from ..engines.base import EngineEvidence
from ..engines.judge import Placement, judge_spill
from ..engines.logparse import mentions_oom
from ..errors import EngineError, EngineStartError, GraphError
from ..load.measure.budget import BudgetTally
from ..load.run.rounds import ScenarioRun
from ..parsers import LOAD_SLO_FLOORS
from ..planner.plan import tightest_card
from .client_options import client_options_verdict
from .conversation import context_verdict, prompt_cache_verdict
from .output_budget import budget_verdict, output_budget_verdict
from .verdict import FAIL, NA, PASS, Verdict

if TYPE_CHECKING:
    from ..load.measure.metrics import Distribution, Summary
    from ..load.results import LoadResult
    from ..planner.modelset import PlanSet
    from ..planner.plan import Plan

__all__ = [
    "FAIL",
    "NA",
    "PASS",
    "Verdict",
    "load_verdicts",
    "model_set_verdicts",
    "offload_verdict",
    "oom_verdict",
    "per_model",
    "resident_verdict",
    "scenario_verdicts",
    "served_verdict",
    "session_verdicts",
    "slo_verdicts",
    "slots_verdict",
    "speedup_verdict",
    "start_failure_verdicts",
]

_MAX_LINES = 5  # evidence lines quoted per source


def oom_verdict(plan: Plan | None, engine: EngineEvidence, errors: Iterable[str] = ()) -> Verdict:
    evidence: list[str] = []
    if plan is not None and not plan.fits and plan.memory.devices:  # several cards: the tightest one
        index, card, held = tightest_card(plan.memory, plan.profile, plan.fit_margin_mib)
        evidence.append(f"plan: card {index} ({card.name}) holds {held.total / MIB:.0f} MiB at peak + "
                        f"{plan.fit_margin_mib} MiB fit margin > {card.usable_mib} MiB usable ({plan.breaking_term})")
    elif plan is not None and not plan.fits:
        evidence.append(f"plan: {plan.total_mib:.0f} MiB at peak + {plan.fit_margin_mib} MiB fit margin > "
                        f"{plan.profile.usable_mib} MiB usable on {plan.profile.name} ({plan.breaking_term})")
    log = engine.log
    if log is not None:
        evidence += [f"log: {line.strip()}" for line in log.oom_lines[:_MAX_LINES]]
        if log.load_failed and not any(line.startswith("log:") for line in evidence):
            evidence.append("log: the model failed to load")
    if engine.died:
        evidence.append(f"server: the process exited during the run (exit code {engine.exit_code})")
    evidence += [f"request: {error}" for error in [e for e in errors if mentions_oom(e)][:_MAX_LINES]]
    if evidence:
        return Verdict(name="oom", outcome=FAIL, summary="the server could not allocate its memory or died",
                       evidence=tuple(evidence))
    source = "the plan fits and the server stayed up" if plan is not None else "the server stayed up"
    return Verdict(name="oom", outcome=PASS, summary=source)


def offload_verdict(engine: EngineEvidence, placement: Placement | None = None) -> Verdict:
    """Weights or KV cache that left the GPU, judged by :func:`~pytest_vramcap.engines.judge.judge_spill`.

    ``placement`` is where the plan puts them; without one, llama.cpp's own defaults.
    """
    log, served = engine.log, engine.served
    if served is not None and 0 < served.vram_mib < served.size_mib:
        # Ollama's own split (the "48%/52% CPU/GPU" of `ollama ps`), with the log's detail when we have it.
        detail = judge_spill(log, placement).evidence if log is not None else ()
        return Verdict(name="cpu_offload", outcome=FAIL,
                       summary=f"Ollama serves {served.cpu_percent}% of the model from the CPU",
                       evidence=(f"/api/ps: {served.describe()}", *(f"log: {line}" for line in detail)))
    if log is None:
        if served is not None and served.vram_mib == served.size_mib > 0:
            return Verdict(name="cpu_offload", outcome=PASS, summary="Ollama reports the model 100% on the GPU",
                           evidence=(f"/api/ps: {served.describe()}",))
        if served is not None:
            return Verdict(name="cpu_offload", outcome=NA, summary="Ollama reports the model 100% on the CPU "
                           "(no GPU in use, and no log to tell whether there is one)",
                           evidence=(f"/api/ps: {served.describe()}",))
        return Verdict(name="cpu_offload", outcome=NA, summary="no engine log to read (attached server)")
    if not log.gpu_present:
        return Verdict(name="cpu_offload", outcome=NA, summary="CPU-only engine: nothing is offloaded to a GPU")
    judgement = judge_spill(log, placement)
    if log.load_failed and not judgement.cpu_offload:
        # Its KV cache or compute buffer was never allocated: "all on the GPU" would be a guess.
        return Verdict(name="cpu_offload", outcome=NA, summary="the model did not finish loading: nothing to judge")
    m = log.offloaded_layers[1] if log.offloaded_layers else 0
    if not judgement.cpu_offload:
        where = "where the plan put them" if placement and placement.gpu_layers < placement.total_layers else \
            "on the GPU"
        return Verdict(name="cpu_offload", outcome=PASS, summary=f"all {m} layers' weights and the KV cache {where}")
    moved = f": {'at most ' if judgement.moved_is_bound else ''}{judgement.moved_mib:.0f} MiB of weights moved" \
        if judgement.moved_mib else ""
    return Verdict(name="cpu_offload", outcome=FAIL, summary=f"weights or KV cache spilled to the CPU{moved}",
                   evidence=tuple(f"log: {line}" for line in judgement.evidence))


def served_verdict(plan: Plan, engine: EngineEvidence) -> Verdict:
    """Whether the engine serves what was planned: the context per slot it reports, and no reload mid-run."""
    served = engine.served
    if served is None and not engine.reloads:
        return Verdict(name="served_as_planned", outcome=NA,
                       summary="the engine reports nothing to compare (llama-server runs the plan's own flags)")
    evidence = list(engine.reloads)
    planned = plan.config.ctx_per_agent
    if served is not None and served.context_length is not None and served.context_length != planned:
        evidence.insert(0, f"/api/ps: context_length {served.context_length}, planned {planned} per agent")
    if evidence:
        return Verdict(name="served_as_planned", outcome=FAIL, summary="the engine does not serve the plan as made",
                       evidence=tuple(evidence))
    assert served is not None
    return Verdict(name="served_as_planned", outcome=PASS,
                   summary=f"{served.name} with {served.context_length} context per agent, as planned, no reload",
                   evidence=(f"/api/ps: {served.describe()}",))


def resident_verdict(engine: EngineEvidence) -> Verdict:
    """Whether the model stayed loaded the whole run: its process lived (llama-server), and Ollama neither
    reloaded nor dropped it (/api/ps, polled during the run). Several models on one card evict each other on
    Ollama when OLLAMA_MAX_LOADED_MODELS is too low; a llama-server that dies takes its model with it."""
    if engine.died:
        code = f" (exit code {engine.exit_code})" if engine.exit_code is not None else ""
        return Verdict(name="resident", outcome=FAIL, summary=f"the server exited during the run{code}",
                       evidence=("the process we started exited without being asked to",))
    if engine.reloads:
        return Verdict(name="resident", outcome=FAIL, summary="the engine reloaded or dropped the model mid-run",
                       evidence=engine.reloads[:_MAX_LINES])
    if engine.log is None and engine.served is None:
        return Verdict(name="resident", outcome=NA,
                       summary="an attached server: nothing tells whether the model stayed loaded")
    where = f"/api/ps: {engine.served.describe()}" if engine.served is not None else "the server's process lived"
    return Verdict(name="resident", outcome=PASS, summary="the model stayed loaded the whole run", evidence=(where,))


def slots_verdict(slots: int, run: ScenarioRun) -> Verdict:
    """Whether the planned slots let every agent meant to run at once do so (no clock involved): the widest
    step of a scenario of steps, or the most requests a graph had in flight in its parallel pass (a count)."""
    width, scenario = run.width, run.scenario
    if width is None:
        return Verdict(name="slots", outcome=NA, summary="the graph's parallel pass did not run")
    if width == 0:  # nothing to fit: a pass that measured nothing fails on its own (parallel_speedup)
        return Verdict(name="slots", outcome=NA, summary="the graph's parallel pass made no recorded request")
    what = "concurrent agents" if scenario.graph is None else "requests in flight at once (the graph's fan-out)"
    if slots >= width:
        return Verdict(name="slots", outcome=PASS, summary=f"{slots} slot(s) for at most {width} {what}")
    evidence = tuple(f"step {step.name}: {len(step.agents)} agents on {slots} slot(s)"
                     for step in scenario.steps if len(step.agents) > slots) or (
        f"parallel pass: up to {width} requests in flight on {slots} slot(s)",)
    return Verdict(name="slots", outcome=FAIL, evidence=evidence,
                   summary=f"the server has {slots} slot(s) for {width} {what}: extra agents queue "
                           f"instead of running in parallel")


def speedup_verdict(run: ScenarioRun, minimum: float | None) -> Verdict:
    seq, par = run.sequential, run.parallel
    rounds = f" (medians of {run.rounds} interleaved rounds)" if run.rounds > 1 else ""
    evidence = [f"sequential {seq.wall_s:.2f} s, parallel {par.wall_s:.2f} s{rounds}"]
    if run.rounds > 1 and run.round_speedups:
        evidence.append(f"speedup per round: {', '.join(f'{ratio:.2f}x' for ratio in run.round_speedups)} "
                        f"(spread {min(run.round_speedups):.2f}x-{max(run.round_speedups):.2f}x)")
    if run.sequential.ok and run.parallel.ok and 0 < run.rounds < run.planned_rounds:
        evidence.append(f"{run.rounds} of {run.planned_rounds} rounds: more than half were on one side of the "
                        f"minimum, so the median of all {run.planned_rounds} would be too")
    evidence += [f"step {name}: {seq.step_walls_s[name]:.2f} s -> {par.step_walls_s.get(name, float('nan')):.2f} s"
                 for name in seq.step_walls_s]
    speedup = run.speedup
    if speedup is None:
        return Verdict(name="parallel_speedup", outcome=FAIL, summary="the runs did not complete",
                       evidence=tuple(evidence + seq.errors + par.errors))
    if minimum is None:
        return Verdict(name="parallel_speedup", outcome=NA, summary=f"{speedup:.2f}x (no minimum set)",
                       evidence=tuple(evidence))
    return Verdict(name="parallel_speedup", outcome=PASS if speedup >= minimum else FAIL,
                   summary=f"{_distinct(speedup, minimum)}x, minimum {minimum:.2f}x", evidence=tuple(evidence))


def _distinct(value: float, limit: float) -> str:
    """``value`` with two decimals, or as many more as it takes not to read as ``limit`` when it is not."""
    digits = 2
    while digits < 6 and value != limit and f"{value:.{digits}f}" == f"{limit:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f}"


def slo_verdicts(run: ScenarioRun, slos: Iterable[tuple[str, float]]) -> list[Verdict]:
    """One verdict per objective, over the parallel passes' requests (``ttft_p95_s`` -> TTFT p95)."""
    summary = run.parallel.summary()
    verdicts = []
    for name, limit in slos:
        metric, stat, _unit = name.split("_")
        measured = _statistic(summary, name)
        if measured is None:
            verdicts.append(Verdict(name=f"slo:{name}", outcome=FAIL, summary=f"no {metric} samples"))
            continue
        value, n = measured
        verdicts.append(Verdict(name=f"slo:{name}", outcome=PASS if value <= limit else FAIL,
                                summary=f"{value:.3f} s, limit {limit:.3f} s",
                                evidence=(f"{metric} {stat} = {value:.3f} s over n = {n} requests",)))
    return verdicts


def _statistic(summary: Summary, name: str, graph: Distribution | None = None) -> tuple[float, int] | None:
    """``ttft_p95_s`` -> (TTFT p95, n) of ``summary`` (``graph_*`` of ``graph``); None without samples."""
    metric, stat, _unit = name.split("_")  # the SLO names fix the shape: metric, statistic, unit
    dist = graph if metric == "graph" else getattr(summary, f"{metric}_s")
    return (float(getattr(dist, stat)), dist.n) if dist is not None else None


def scenario_verdicts(plan: Plan, engine: EngineEvidence, run: ScenarioRun, minimum: float | None,
                      slos: Iterable[tuple[str, float]]) -> list[Verdict]:
    """Every verdict on one scenario run."""
    errors = run.sequential.errors + run.parallel.errors
    passes = [mode_pass.records for mode in (run.sequential, run.parallel) for mode_pass in mode.passes]
    return [oom_verdict(plan, engine, errors), offload_verdict(engine, Placement.planned(plan.memory)),
            served_verdict(plan, engine), resident_verdict(engine), client_options_verdict(plan, passes),
            output_budget_verdict(passes),
            slots_verdict(plan.config.parallel, run), context_verdict(plan.config.ctx_per_agent, run),
            prompt_cache_verdict(run, run.scenario.expect.prompt_cache_min), speedup_verdict(run, minimum),
            *slo_verdicts(run, slos)]


def model_set_verdicts(plans: PlanSet, engines: Mapping[str, EngineEvidence], run: ScenarioRun,
                       minimum: float | None, slos: Iterable[tuple[str, float]]) -> list[Verdict]:
    """Every verdict on one scenario run over the models of ``plans`` (their servers' evidence by role).

    One model: :func:`scenario_verdicts`. Several: each model judged on its own plan, its own server and the part
    of the run that talked to it (:meth:`ScenarioRun.for_model`), each verdict once with every model's part
    (:func:`per_model`); the speedup and the objectives on the whole run.
    """
    if not plans.several:
        return scenario_verdicts(plans.primary, engines[plans.roles[0]], run, minimum, slos)
    by_name: dict[str, dict[str, Verdict]] = {}
    for index, (role, plan) in enumerate(plans.plans.items()):
        mine = run.for_model(role, first=index == 0)
        engine = engines[role]
        verdicts = [oom_verdict(plan, engine, run.sequential.errors + run.parallel.errors),
                    offload_verdict(engine, Placement.planned(plan.memory)), served_verdict(plan, engine),
                    resident_verdict(engine)]
        if mine.scenario.steps or (run.scenario.graph is not None and index == 0):
            passes = [p.records for mode in (mine.sequential, mine.parallel) for p in mode.passes]
            verdicts += [client_options_verdict(plan, passes), output_budget_verdict(passes),
                         slots_verdict(plan.config.parallel, mine), context_verdict(plan.config.ctx_per_agent, mine),
                         prompt_cache_verdict(mine, run.scenario.expect.prompt_cache_min)]
        for verdict in verdicts:
            by_name.setdefault(verdict.name, {})[role] = verdict
    return [*(per_model(name, parts) for name, parts in by_name.items()), speedup_verdict(run, minimum),
            *slo_verdicts(run, slos)]


def per_model(name: str, parts: Mapping[str, Verdict]) -> Verdict:
    """One verdict of several models' verdicts of one name: failed if any failed, passed if any passed and none
    failed; each model's summary and evidence under its role."""
    outcomes = [verdict.outcome for verdict in parts.values()]
    outcome = FAIL if FAIL in outcomes else PASS if PASS in outcomes else outcomes[0]
    shown = [(role, verdict) for role, verdict in parts.items() if verdict.outcome == outcome]
    return Verdict(name=name, outcome=outcome, summary="; ".join(f"{role}: {v.summary}" for role, v in shown),
                   evidence=tuple(f"{role}: {line}" for role, v in shown for line in v.evidence))


def _error_summary(error: EngineError) -> str:
    return error.summary if isinstance(error, EngineStartError) else str(error)


def start_failure_verdicts(plan: Plan, engine: EngineEvidence, error: EngineError) -> list[Verdict]:
    """When the server never came up: what its log and exit say (an OOM at load, usually)."""
    oom = oom_verdict(plan, engine)
    if not oom.failed:
        oom = Verdict(name="oom", outcome=FAIL, summary="the server did not start",
                      evidence=(f"server: {_error_summary(error)}",))
    return [oom, offload_verdict(engine, Placement.planned(plan.memory))]


def graph_verdict(error: GraphError) -> Verdict:
    """A scenario whose graph could not be imported or built: nothing ran."""
    return Verdict(name="graph", outcome=FAIL, summary=str(error))


def session_verdicts(engine: EngineEvidence | Mapping[str, EngineEvidence] | None,
                     error: EngineError | None) -> list[Verdict]:
    """Failures of the run as a whole, judged after the last test.

    A server that died or logged an OOM (each model's, by role, where there are several), or one that never
    started.
    """
    verdicts = []
    engines = {"": engine} if isinstance(engine, EngineEvidence) else dict(engine or {})
    failed = {role: oom for role, oom in ((role, oom_verdict(None, each)) for role, each in engines.items())
              if oom.failed}
    if failed:  # one model's verdict as it is; several models' under their roles
        verdicts.append(next(iter(failed.values())) if len(engines) == 1 else per_model("oom", failed))
    if error is not None:
        verdicts.append(Verdict(name="engine", outcome=FAIL, summary=_error_summary(error)))
    return verdicts


def _unreachable_verdict(result: LoadResult) -> list[Verdict]:
    """Requests that could not connect mean the server went away mid-run: no objective can pass on that."""
    refused = result.summary.failures.get("connection", 0)
    if not refused:
        return []
    first = next((message for message in sorted(result.locust_failures) if message.startswith("connection:")), "")
    return [Verdict(name="engine", outcome=FAIL, summary=f"the server stopped answering: {refused} request(s) could "
                                                          f"not connect", evidence=(first,) if first else ())]


def load_verdicts(result: LoadResult, slos: Iterable[tuple[str, float]]) -> list[Verdict]:
    """One verdict per load objective (``vramcap load --slo``): a ceiling, or a floor for ``output_tps``; and an
    ``engine`` verdict that fails when requests could not reach the server (it died or stopped listening)."""
    summary = result.summary
    verdicts = [*_unreachable_verdict(result)]
    for name, limit in slos:
        value: float | None
        n = summary.requests
        if name == "failure_ratio":
            value = result.failure_ratio
        elif name == "output_tps":
            value = summary.output_tps
        else:
            value, n = _statistic(summary, name, result.graph_s) or (None, 0)
        if value is None:
            verdicts.append(Verdict(name=f"slo:{name}", outcome=FAIL, summary="no samples: nothing finished"))
            continue
        floor = name in LOAD_SLO_FLOORS
        met = value >= limit if floor else value <= limit
        verdicts.append(Verdict(name=f"slo:{name}", outcome=PASS if met else FAIL,
                                summary=f"{value:.3f}, {'at least' if floor else 'at most'} {limit:g}",
                                evidence=(f"{name} = {value:.4f} over n = {n} ({result.users} users, "
                                          f"{result.duration_s:.0f} s)",)))
    budget = BudgetTally.from_dict(result.output_budget)
    if budget.audited:  # a graph's requests, through the proxy: what the engine did with their limits
        verdicts.append(budget_verdict(budget))
    return verdicts
