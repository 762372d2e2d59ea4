"""The three verdicts, each with the evidence that decided it.

* ``oom``              the server could not allocate, or died: the plan's prediction,
                       load failures, OOM lines in the log, a dead process, OOM-ish HTTP errors.
* ``cpu_offload``      llama.cpp left layers or KV on the CPU ("offloaded N/M" with
                       N < M, CPU KV buffers) on a GPU run.
* ``parallel_speedup`` sequential wall time / parallel wall time reached the minimum.

A verdict is ``pass``, ``fail`` or ``n/a`` (it cannot apply: no GPU to offload
from, no minimum set); only ``fail`` fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .engines.logparse import OOM_MARKERS, ServerLog
from .fanout import ScenarioRun
from .planner import Plan

__all__ = ["Verdict", "oom_verdict", "offload_verdict", "speedup_verdict", "slo_verdicts", "PASS", "FAIL", "NA"]

PASS, FAIL, NA = "pass", "fail", "n/a"


@dataclass(frozen=True)
class Verdict:
    name: str
    outcome: str
    summary: str
    evidence: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return self.outcome == FAIL

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "outcome": self.outcome, "summary": self.summary, "evidence": list(self.evidence)}

    def describe(self) -> str:
        lines = [f"[{self.outcome.upper()}] {self.name}: {self.summary}"]
        lines += [f"    - {line}" for line in self.evidence]
        return "\n".join(lines)


def oom_verdict(plan: Plan | None, log: ServerLog | None, server_alive: bool | None, exit_code: int | None,
                errors: Iterable[str] = ()) -> Verdict:
    evidence: list[str] = []
    if plan is not None and not plan.fits:
        evidence.append(f"plan: {plan.total_mib:.0f} MiB at peak + {plan.fit_margin_mib} MiB fit margin > "
                        f"{plan.profile.usable_mib} MiB usable on {plan.profile.name} ({plan.breaking_term})")
    if log is not None:
        evidence += [f"log: {line.strip()}" for line in log.errors if any(m in line for m in OOM_MARKERS)][:5]
        if log.load_failed and not any(e.startswith("log:") for e in evidence):
            evidence.append("log: the model failed to load")
    if server_alive is False:
        evidence.append(f"server: the process exited during the run (exit code {exit_code})")
    oomish = [e for e in errors if any(m in e.lower() for m in ("out of memory", "cudamalloc", "failed to allocate"))]
    evidence += [f"request: {e}" for e in oomish[:5]]
    if evidence:
        return Verdict("oom", FAIL, "the server could not allocate its memory or died", tuple(evidence))
    source = "the plan fits and the server stayed up" if plan is not None else "the server stayed up"
    return Verdict("oom", PASS, source)


def offload_verdict(log: ServerLog | None) -> Verdict:
    if log is None:
        return Verdict("cpu_offload", NA, "no engine log to read (attached server)")
    if not log.gpu_present:
        return Verdict("cpu_offload", NA, "CPU-only engine: nothing is offloaded to a GPU")
    n, m = log.offloaded_layers or (0, 0)
    if not log.cpu_offload:
        return Verdict("cpu_offload", PASS, f"all {m} layers and the KV cache on the GPU")
    evidence = []
    if log.layers_on_cpu:
        evidence.append(f"log: offloaded {n}/{m} layers to GPU ({log.layers_on_cpu} left on the CPU)")
        if log.model.host():
            evidence.append(f"log: CPU model buffers {log.model.host():.2f} MiB")
    if log.kv.host() > 0:
        evidence.append(f"log: CPU KV buffer {log.kv.host():.2f} MiB")
    if log.fit_ran:
        evidence.append("log: llama.cpp --fit moved them to fit free memory")
    return Verdict("cpu_offload", FAIL, "layers or KV cache spilled to the CPU", tuple(evidence))


def speedup_verdict(run: ScenarioRun, minimum: float | None, slots: int | None = None) -> Verdict:
    seq, par = run.sequential, run.parallel
    evidence = [f"sequential {seq.wall_s:.2f} s, parallel {par.wall_s:.2f} s"]
    evidence += [f"step {name}: {seq.step_walls_s[name]:.2f} s -> {par.step_walls_s.get(name, float('nan')):.2f} s"
                 for name in seq.step_walls_s]
    if run.speedup is None:
        return Verdict("parallel_speedup", FAIL, "the runs did not complete", tuple(evidence + seq.errors + par.errors))
    width = run.scenario.max_width
    if slots is not None and slots < width:
        evidence.append(f"the server has {slots} slot(s) for {width} concurrent agents: extra agents queue")
    if minimum is None:
        return Verdict("parallel_speedup", NA, f"{run.speedup:.2f}x (no minimum set)", tuple(evidence))
    outcome = PASS if run.speedup >= minimum else FAIL
    return Verdict("parallel_speedup", outcome, f"{run.speedup:.2f}x, minimum {minimum:.2f}x", tuple(evidence))


def slo_verdicts(run: ScenarioRun, slos: Iterable[tuple[str, float]]) -> list[Verdict]:
    """One verdict per objective, over the parallel run's requests (``ttft_p95_s`` -> TTFT p95)."""
    summary = run.parallel.summary()
    verdicts = []
    for name, limit in slos:
        metric, stat, _unit = name.split("_")  # "ttft_p95_s" -> ttft, p95, s
        dist = summary.get(f"{metric}_s")
        if not dist:
            verdicts.append(Verdict(f"slo:{name}", FAIL, f"no {metric} samples"))
            continue
        value = dist[stat]
        evidence = (f"{metric} {stat} = {value:.3f} s over n = {dist['n']} requests",)
        outcome = PASS if value <= limit else FAIL
        verdicts.append(Verdict(f"slo:{name}", outcome, f"{value:.3f} s, limit {limit:.3f} s", evidence))
    return verdicts
