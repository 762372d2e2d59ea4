"""Latency and throughput metrics (DESIGN section 5: formulas, not names).

Per request: TTFT = t_first - t_send, E2E = t_last - t_send,
TPOT = (E2E - TTFT) / (N_out - 1) for N_out >= 2, every request weighted equally.
Output tok/s = sum N_out / wall window. Parallel speedup = sequential wall /
parallel wall. Percentiles interpolate linearly between order statistics and are
reported with their n; p99 is only meaningful from n >= 100 (``reliable``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .client import RequestRecord

__all__ = ["percentile", "Distribution", "summarize", "parallel_speedup", "MIN_N_FOR_P99"]

MIN_N_FOR_P99 = 100


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    n: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @property
    def p99_reliable(self) -> bool:
        return self.n >= MIN_N_FOR_P99

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution | None":
        data = list(values)
        if not data:
            return None
        return cls(len(data), sum(data) / len(data), percentile(data, 50), percentile(data, 90),
                   percentile(data, 95), percentile(data, 99), max(data))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "p50": self.p50, "p90": self.p90, "p95": self.p95,
                "p99": self.p99, "max": self.max, "p99_reliable": self.p99_reliable}


def summarize(records: Sequence[RequestRecord], wall_s: float | None = None) -> dict[str, Any]:
    """Distributions of TTFT / TPOT / E2E over successful requests, and output throughput."""
    ok = [record for record in records if record.ok and record.e2e is not None]
    if wall_s is None and ok:
        wall_s = max(r.t_last for r in ok if r.t_last is not None) - min(r.t_send for r in ok)
    tokens = sum(record.n_out for record in ok)

    def dist(values: Iterable[float | None]) -> dict[str, Any] | None:
        found = Distribution.of(value for value in values if value is not None)
        return found.to_dict() if found else None

    return {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "output_tokens": tokens,
        "token_count_source": sorted({record.n_out_source for record in ok}),
        "wall_s": wall_s,
        "output_tps": tokens / wall_s if wall_s else None,
        "ttft_s": dist(record.ttft for record in ok),
        "tpot_s": dist(record.tpot for record in ok),
        "e2e_s": dist(record.e2e for record in ok),
    }


def parallel_speedup(sequential_wall_s: float, parallel_wall_s: float) -> float:
    if parallel_wall_s <= 0:
        raise ValueError("parallel wall time must be positive")
    return sequential_wall_s / parallel_wall_s
