"""Latency and throughput metrics: fixed formulas, documented in README "The embedded engine".

Per request: TTFT = t_first - t_send, E2E = t_last - t_send,
TPOT = (E2E - TTFT) / (N_out - 1) for N_out >= 2, every request weighted equally.
Output tok/s = sum N_out / wall window. Parallel speedup = sequential wall /
parallel wall. Percentiles interpolate linearly between order statistics and are
reported with their n; p99 is only meaningful from n >= 100 (``p99_reliable``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, computed_field

from .record import RequestRecord

__all__ = ["MIN_N_FOR_P99", "Distribution", "Summary", "interpolate", "parallel_speedup", "percentile", "summarize"]

MIN_N_FOR_P99 = 100


def interpolate(order_statistic: Callable[[int], float], n: int, q: float) -> float:
    """The q-th percentile (0..100) of ``n`` values by linear interpolation between order statistics (numpy's
    default method); ``order_statistic(i)`` is the i-th smallest (0-based), from a sorted list or a histogram."""
    if not n:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    rank = (n - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    lowest = order_statistic(low)
    return lowest + (order_statistic(high) - lowest) * (rank - low)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values`` by linear interpolation (numpy's default method)."""
    ordered = sorted(values)
    return interpolate(ordered.__getitem__, len(ordered), q)


class Distribution(BaseModel):
    """One metric over n requests (seconds)."""

    model_config = ConfigDict(frozen=True)

    n: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def p99_reliable(self) -> bool:
        return self.n >= MIN_N_FOR_P99

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution | None:
        data = list(values)
        if not data:
            return None
        ordered = sorted(data)  # once, for every percentile asked
        return cls.at(len(data), sum(data) / len(data), max(data),
                      lambda q: interpolate(ordered.__getitem__, len(ordered), q))

    @classmethod
    def at(cls, n: int, mean: float, maximum: float, percentile_at: Callable[[float], float]) -> Distribution:
        """n values with this mean and max, and ``percentile_at(q)`` their q-th percentile: the percentiles
        reported are asked of it, so a list and a histogram report the same ones."""
        return cls(n=n, mean=mean, p50=percentile_at(50), p90=percentile_at(90), p95=percentile_at(95),
                   p99=percentile_at(99), max=maximum)


class Summary(BaseModel):
    """Distributions of TTFT / TPOT / E2E over the successful requests of a pass, and its throughput."""

    model_config = ConfigDict(frozen=True)

    requests: int
    errors: int
    failures: dict[str, int]
    """Failed requests by kind (load/measure/failures.py): queue_full, context_overflow, oom, timeout..."""
    output_tokens: int
    token_count_source: list[str]
    """``usage`` (the server's count) and/or ``chunks`` (one token per content chunk)."""
    wall_s: float | None
    output_tps: float | None
    ttft_s: Distribution | None
    tpot_s: Distribution | None
    e2e_s: Distribution | None
    embed_s: Distribution | None = None
    """Latency of the embedding requests (a retrieval before an answer); TTFT, TPOT and E2E are the chats'."""


def summarize(records: Sequence[RequestRecord], wall_s: float | None = None) -> Summary:
    """Summarize ``records``; without ``wall_s`` the window runs from the first send to the last token."""
    ok = [record for record in records if record.ok and record.e2e is not None]
    ok_ids = {id(record) for record in ok}
    if wall_s is None and ok:
        wall_s = max(r.t_last for r in ok if r.t_last is not None) - min(r.t_send for r in ok)
    tokens = sum(record.n_out for record in ok)
    return Summary(
        requests=len(records),
        errors=len(records) - len(ok),
        failures=dict(Counter(record.error_kind or "no_output" for record in records if id(record) not in ok_ids)),
        output_tokens=tokens,
        token_count_source=sorted({record.n_out_source for record in ok}),
        wall_s=wall_s,
        output_tps=tokens / wall_s if wall_s else None,
        ttft_s=Distribution.of(r.ttft for r in ok if r.ttft is not None),
        tpot_s=Distribution.of(r.tpot for r in ok if r.tpot is not None),
        e2e_s=Distribution.of(r.e2e for r in ok if r.e2e is not None and r.endpoint == "chat"),
        embed_s=Distribution.of(r.e2e for r in ok if r.e2e is not None and r.endpoint == "embeddings"),
    )


def parallel_speedup(sequential_wall_s: float, parallel_wall_s: float) -> float:
    if parallel_wall_s <= 0:
        raise ValueError("parallel wall time must be positive")
    return sequential_wall_s / parallel_wall_s
