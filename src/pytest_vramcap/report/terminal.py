"""The verdict table printed at the end of a pytest run."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from .schema import ScenarioResult

__all__ = ["summary_table"]

_HEADERS = ("scenario", "seq s", "par s", "speedup", "min", "oom", "offload", "options", "budget", "slots", "speedup",
            "slo", "result")


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


def summary_table(results: Sequence[ScenarioResult], tablefmt: str = "simple") -> str:
    """One row per scenario: median wall times, median speedup and its minimum, each verdict, the result."""
    rows = []
    for result in results:
        slos = [v for v in result.verdicts if v.name.startswith("slo:")]
        rows.append((
            result.name,
            _seconds(result.sequential.wall_s if result.sequential else None),
            _seconds(result.parallel.wall_s if result.parallel else None),
            _ratio(result.speedup),
            _ratio(result.min_speedup),
            result.outcome("oom"),
            result.outcome("cpu_offload"),
            result.outcome("client_options"),
            result.outcome("output_budget"),
            result.outcome("slots"),
            result.outcome("parallel_speedup"),
            "fail" if any(v.failed for v in slos) else ("pass" if slos else "-"),
            "PASSED" if result.passed else "FAILED",
        ))
    return tabulate(rows, headers=_HEADERS, tablefmt=tablefmt)
