"""What a load run measured, free of Locust (the report and the verdicts read it in processes without gevent)."""

from __future__ import annotations

from dataclasses import dataclass

from .measure.metrics import Distribution, Summary

__all__ = ["LoadResult"]


@dataclass(frozen=True)
class LoadResult:
    scenario: str
    users: int
    duration_s: float
    summary: Summary
    """Every finished request, by load/metrics.py's formulas."""
    graph_s: Distribution | None
    """Whole-graph completion times of the graphs that finished."""
    graphs: int
    failed_graphs: int
    locust_failures: dict[str, int]
    """Locust's failure table: ``<kind>: <message>`` -> occurrences."""

    @property
    def failure_ratio(self) -> float:
        return self.summary.errors / self.summary.requests if self.summary.requests else 0.0
