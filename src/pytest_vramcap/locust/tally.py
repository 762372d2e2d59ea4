"""Output tokens and finished graphs of a whole Locust run, across its processes.

Locust aggregates its own request entries from workers; our counts (output tokens, graphs)
travel the same way, in the data of each worker report (``report_to_master`` /
``worker_report`` events). A worker's :class:`LoadTally` hands over what it counted since its
last report (:meth:`LoadTally.take_report`); the master merges every report into its own
(:meth:`LoadTally.merge`). A local runner just counts. So "N graphs finished" and "output
tokens per second" mean the whole run on any runner.

Free of Locust: the web UI's VRAM tab and the tests read it without gevent. Only counts and the last
:data:`RATE_WINDOW_S` seconds of tokens are kept, so its memory stays the same however long the run.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..load.measure.budget import BudgetTally
from ..load.measure.record import RequestRecord

__all__ = ["LoadTally"]

RATE_WINDOW_S = 10.0
"""Locust's own "current RPS" looks back 10 s too (stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW)."""
_COUNTS = ("output_tokens", "requests", "failed_requests", "graphs", "failed_graphs")
"""The counts a worker reports: every one of them adds up across processes."""


def _empty_report() -> dict[str, int]:
    return dict.fromkeys(_COUNTS, 0)


@dataclass
class LoadTally:
    output_tokens: int = 0
    requests: int = 0
    failed_requests: int = 0
    graphs: int = 0
    """Finished graphs, failed or not."""
    failed_graphs: int = 0
    started_at: float | None = None
    """``time.monotonic()`` at test start, for the whole run's tokens/s."""
    stopped_at: float | None = None
    """``time.monotonic()`` at test stop: the whole run's tokens/s ends there."""
    workers: set[str] = field(default_factory=set)
    """The workers whose reports were merged."""
    budget: BudgetTally = field(default_factory=BudgetTally)
    """The audited requests' output limits and dropped fields (a graph's requests through the proxy)."""
    _unreported_budget: BudgetTally = field(default_factory=BudgetTally)
    _recent: deque[tuple[float, int]] = field(default_factory=deque)
    """(when counted, output tokens) of the last :data:`RATE_WINDOW_S` seconds."""
    _unreported: dict[str, int] = field(default_factory=_empty_report)

    def add_request(self, output_tokens: int, ok: bool, now: float | None = None) -> None:
        self._count({"output_tokens": output_tokens, "requests": 1, "failed_requests": 0 if ok else 1}, now)

    def add_audit(self, record: RequestRecord) -> None:
        """What an ended request asked of its engine and got (nothing for one the proxy did not audit)."""
        if record.audit is not None:
            self.budget.add(record)
            self._unreported_budget.add(record)

    def add_graph(self, ok: bool) -> None:
        self._count({"graphs": 1, "failed_graphs": 0 if ok else 1}, None)

    def take_report(self) -> dict[str, Any]:
        """What was counted since the last call, for a worker's report to the master (counts by name)."""
        report: dict[str, Any] = dict(self._unreported)
        report["budget"], self._unreported, self._unreported_budget = (
            self._unreported_budget.to_dict(), _empty_report(), BudgetTally())
        return report

    def merge(self, report: dict[str, Any], *, worker: str, now: float | None = None) -> None:
        """Add a worker's :meth:`take_report`."""
        self.workers.add(worker)
        self._count({name: int(report.get(name, 0)) for name in _COUNTS}, now, forward=False)
        if isinstance(report.get("budget"), dict):
            self.budget.merge(report["budget"])

    def rate(self, now: float | None = None) -> float:
        """Output tokens per second over the last :data:`RATE_WINDOW_S` seconds (counted as requests end)."""
        now = time.monotonic() if now is None else now
        self._forget_before(now - RATE_WINDOW_S)
        if self.started_at is None:
            return 0.0
        window = min(RATE_WINDOW_S, now - self.started_at)
        return sum(tokens for _, tokens in self._recent) / window if window > 0 else 0.0

    def overall_rate(self, now: float | None = None) -> float | None:
        """Output tokens per second from test start to test stop (or now, while it runs)."""
        if self.started_at is None:
            return None
        end = self.stopped_at if self.stopped_at is not None else time.monotonic() if now is None else now
        elapsed = end - self.started_at
        return self.output_tokens / elapsed if elapsed > 0 else None

    def _count(self, counts: dict[str, int], now: float | None, *, forward: bool = True) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)
            if forward:  # what a worker still owes its master; a master's merged counts are already there
                self._unreported[name] += value
        if tokens := counts.get("output_tokens", 0):
            now = time.monotonic() if now is None else now
            self._recent.append((now, tokens))
            self._forget_before(now - RATE_WINDOW_S)  # headless runs never ask for the rate: keep only the window

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

