"""What a load run measured, free of Locust (the report and the verdicts read it in processes without gevent).

:class:`LoadStats` counts a run as its requests and graphs end, in memory that stays bounded however long the
run (Locust's stats.py way): counts, sums, first send and last token, and each latency as a histogram of
rounded times (:class:`Histogram`), never the requests themselves. :class:`LoadResult` is what ``vramcap load``
hands on; with its verdicts (report/load_output.py's ``LoadReport``) it is the ``--json`` file the pytest gate
reads back.

How exact: counts, output tokens, tokens/s (tokens over first send to last token), n, mean and max are exact.
Each sample is rounded to :data:`SIGNIFICANT_DIGITS` significant digits before it is counted (Locust rounds
response times to 2, stats.py ``StatsEntry._log_response_time``), and the percentiles are
load/measure/metrics.py's (linear interpolation between order statistics) over the rounded samples: rounding
keeps their order, so each percentile is within 0.5 % of the one the exact samples give (never above the exact
max). A histogram holds at most 900 buckets per decade between 1 µs and the longest sample.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from .measure.metrics import Distribution, Summary, interpolate
from .measure.record import RequestRecord

__all__ = ["SIGNIFICANT_DIGITS", "Histogram", "LoadResult", "LoadStats"]

SIGNIFICANT_DIGITS = 3
_FLOOR_S = 1e-6
"""Samples below a microsecond count as 0 (a clock step, or a cached answer): buckets end there."""


def bucket(value: float) -> float:
    """``value`` rounded to :data:`SIGNIFICANT_DIGITS` significant digits (0 below :data:`_FLOOR_S`)."""
    if value < _FLOOR_S:
        return 0.0
    return round(value, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(value)))


@dataclass
class Histogram:
    """One metric's samples as counts of rounded values, with the exact n, sum and max."""

    counts: dict[float, int] = field(default_factory=dict)
    n: int = 0
    total: float = 0.0
    max: float = 0.0

    def add(self, value: float) -> None:
        key = bucket(value)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.n += 1
        self.total += value
        self.max = value if self.n == 1 else max(self.max, value)

    def percentile(self, q: float) -> float:
        """metrics.interpolate over the rounded samples, at most the exact max."""
        return self._percentile_at(self._order_statistic())(q)

    def distribution(self) -> Distribution | None:
        if not self.n:
            return None
        return Distribution.at(self.n, self.total / self.n, self.max, self._percentile_at(self._order_statistic()))

    def _order_statistic(self) -> Callable[[int], float]:
        """The i-th smallest rounded sample (0-based), found in the cumulative counts of the sorted buckets."""
        values = sorted(self.counts)
        cumulative = list(itertools.accumulate(self.counts[value] for value in values))
        return lambda i: values[bisect.bisect_right(cumulative, i)]

    def _percentile_at(self, order_statistic: Callable[[int], float]) -> Callable[[float], float]:
        return lambda q: min(interpolate(order_statistic, self.n, q), self.max)


@dataclass
class LoadStats:
    """A run's requests and graphs as they end; :meth:`summary` is load/measure/metrics.py's ``summarize`` of them
    (the formulas of :class:`~.measure.metrics.Summary`), from bounded counts instead of the records."""

    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    output_tokens: int = 0
    token_count_sources: set[str] = field(default_factory=set)
    first_send: float | None = None
    """Of the successful requests: the window of tokens/s runs from the first send to the last token."""
    last_token: float | None = None
    ttft: Histogram = field(default_factory=Histogram)
    tpot: Histogram = field(default_factory=Histogram)
    e2e: Histogram = field(default_factory=Histogram)
    graph_times: Histogram = field(default_factory=Histogram)
    """Whole-graph times of the graphs that succeeded."""

    def add_request(self, record: RequestRecord) -> None:
        self.requests += 1
        if not (record.ok and record.e2e is not None):
            self.failures[record.error_kind or "no_output"] += 1
            return
        self.output_tokens += record.n_out
        self.token_count_sources.add(record.n_out_source)
        self.first_send = record.t_send if self.first_send is None else min(self.first_send, record.t_send)
        if record.t_last is not None:
            self.last_token = record.t_last if self.last_token is None else max(self.last_token, record.t_last)
        self.e2e.add(record.e2e)
        if record.ttft is not None:
            self.ttft.add(record.ttft)
        if record.tpot is not None:
            self.tpot.add(record.tpot)

    def add_graph(self, wall_s: float, ok: bool) -> None:
        if ok:
            self.graph_times.add(wall_s)

    def summary(self) -> Summary:
        wall_s = self.last_token - self.first_send if self.last_token is not None and self.first_send is not None \
            else None
        return Summary(requests=self.requests, errors=sum(self.failures.values()), failures=dict(self.failures),
                       output_tokens=self.output_tokens, token_count_source=sorted(self.token_count_sources),
                       wall_s=wall_s, output_tps=self.output_tokens / wall_s if wall_s else None,
                       ttft_s=self.ttft.distribution(), tpot_s=self.tpot.distribution(),
                       e2e_s=self.e2e.distribution())


class LoadResult(BaseModel):
    """What ``vramcap load`` measured; report/load_output.py's ``LoadReport`` adds the verdicts for ``--json``."""

    model_config = ConfigDict(frozen=True)

    scenario: str
    users: int
    duration_s: float
    graphs: int
    failed_graphs: int
    summary: Summary
    """Every finished request, by load/measure/metrics.py's formulas (:class:`LoadStats`)."""
    graph_s: Distribution | None
    """Whole-graph completion times of the graphs that finished."""
    locust_failures: dict[str, int]
    """Locust's failure table: ``<kind>: <message>`` -> occurrences."""
    output_budget: dict[str, Any] = {}
    """The audited requests' limits and dropped fields (:class:`~.measure.budget.BudgetTally`'s ``to_dict``)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failure_ratio(self) -> float:
        return self.summary.errors / self.summary.requests if self.summary.requests else 0.0
