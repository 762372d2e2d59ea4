"""What ``vramcap load`` prints and writes: the load's numbers by the project's formulas, then its verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from .verdicts import Verdict

if TYPE_CHECKING:
    from ..load.measure.metrics import Distribution
    from ..load.results import LoadResult

__all__ = ["format_load", "load_json"]


def _row(name: str, dist: Distribution | None, scale: float = 1.0, unit: str = "s") -> tuple[str, ...]:
    if dist is None:
        return (name, "-", "-", "-", "0")
    return (f"{name} ({unit})", f"{dist.p50 * scale:.3f}", f"{dist.p95 * scale:.3f}", f"{dist.max * scale:.3f}",
            str(dist.n))


def format_load(result: LoadResult, verdicts: Sequence[Verdict]) -> str:
    summary = result.summary
    rows = [_row("TTFT", summary.ttft_s), _row("TPOT", summary.tpot_s, 1000, "ms"), _row("E2E", summary.e2e_s),
            _row("graph", result.graph_s)]
    failures = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.failures.items())) or "none"
    tps = f"{summary.output_tps:.1f}" if summary.output_tps is not None else "-"
    counted = ", ".join(summary.token_count_source) or "nothing"
    lines = [f"{result.scenario}: {result.users} users for {result.duration_s:.0f} s, {result.graphs} graphs "
             f"({result.failed_graphs} failed), {summary.requests} requests, failures: {failures}",
             f"output: {summary.output_tokens} tokens, {tps} tokens/s (counted from {counted})",
             "", tabulate(rows, headers=("", "p50", "p95", "max", "n"))]
    if verdicts:
        lines += ["", *(verdict.describe() for verdict in verdicts)]
    return "\n".join(lines)


def load_json(result: LoadResult, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    return {"scenario": result.scenario, "users": result.users, "duration_s": result.duration_s,
            "graphs": result.graphs, "failed_graphs": result.failed_graphs,
            "failure_ratio": result.failure_ratio, "summary": result.summary.model_dump(),
            "graph_s": result.graph_s.model_dump() if result.graph_s else None,
            "locust_failures": result.locust_failures, "verdicts": [v.model_dump() for v in verdicts],
            "passed": not any(v.failed for v in verdicts)}
