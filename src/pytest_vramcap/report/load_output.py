"""What ``vramcap load`` prints and writes: the load's numbers by the project's formulas, then its verdicts.

:class:`LoadReport` is the one model of a load that crosses processes: ``vramcap load --json`` writes it, the
pytest gate (plugin/load_gate.py) reads it back. Its keys are a contract (scenario, users, duration_s, graphs,
failed_graphs, failure_ratio, summary, graph_s, locust_failures, verdicts, passed); it lives here, not beside
:class:`~pytest_vramcap.load.results.LoadResult`, because the verdicts are the report stage's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import computed_field
from tabulate import tabulate

from ..load.results import LoadResult
from .verdicts import Verdict

if TYPE_CHECKING:
    from ..load.measure.metrics import Distribution

__all__ = ["LoadReport", "format_load"]


class LoadReport(LoadResult):
    """A load's result and its verdicts: ``vramcap load --json``."""

    verdicts: list[Verdict]

    @classmethod
    def of(cls, result: LoadResult, verdicts: Sequence[Verdict]) -> LoadReport:
        return cls(**{name: getattr(result, name) for name in LoadResult.model_fields}, verdicts=list(verdicts))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not any(verdict.failed for verdict in self.verdicts)


def _row(name: str, dist: Distribution | None, scale: float = 1.0, unit: str = "s") -> tuple[str, ...]:
    if dist is None:
        return (name, "-", "-", "-", "0")
    return (f"{name} ({unit})", f"{dist.p50 * scale:.3f}", f"{dist.p95 * scale:.3f}", f"{dist.max * scale:.3f}",
            str(dist.n))


def format_load(report: LoadReport) -> str:
    summary = report.summary
    rows = [_row("TTFT", summary.ttft_s), _row("TPOT", summary.tpot_s, 1000, "ms"), _row("E2E", summary.e2e_s),
            _row("graph", report.graph_s)]
    failures = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.failures.items())) or "none"
    tps = f"{summary.output_tps:.1f}" if summary.output_tps is not None else "-"
    counted = ", ".join(summary.token_count_source) or "nothing"
    lines = [f"{report.scenario}: {report.users} users for {report.duration_s:.0f} s, {report.graphs} graphs "
             f"({report.failed_graphs} failed), {summary.requests} requests, failures: {failures}",
             f"output: {summary.output_tokens} tokens, {tps} tokens/s (counted from {counted})",
             "", tabulate(rows, headers=("", "p50", "p95", "max", "n"))]
    if report.verdicts:
        lines += ["", *(verdict.describe() for verdict in report.verdicts)]
    return "\n".join(lines)
