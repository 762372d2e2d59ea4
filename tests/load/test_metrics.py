from __future__ import annotations

import numpy as np
import pytest

from pytest_vramcap.load.measure.client import RequestRecord
from pytest_vramcap.load.measure.metrics import Distribution, parallel_speedup, percentile, summarize
from tests.factories import timed_record


@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
def test_percentile_is_linear_interpolation(q: float) -> None:
    values = [0.31, 0.12, 0.95, 0.44, 0.27, 0.61, 0.08]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_request_formulas() -> None:
    r = timed_record(10.0, 10.5, 12.5, 5)
    assert r.ttft == 0.5 and r.e2e == 2.5 and r.tpot == pytest.approx(2.0 / 4)
    assert timed_record(0, 1, 1, 1).tpot is None  # undefined for a single token


def test_summary_weights_requests_equally_and_counts_errors() -> None:
    records = [timed_record(0.0, 0.2, 1.2, 11), timed_record(0.0, 0.4, 4.4, 41)]
    failed = RequestRecord(label="x", t_send=0.0, error="HTTP 500")
    summary = summarize([*records, failed], wall_s=5.0)
    assert summary.requests == 3 and summary.errors == 1
    assert summary.output_tokens == 52 and summary.output_tps == pytest.approx(52 / 5.0)
    # TPOT per request: 0.1 and 0.1 -> mean 0.1 regardless of token counts
    assert summary.tpot_s is not None and summary.tpot_s.mean == pytest.approx(0.1)
    assert summary.ttft_s is not None and summary.ttft_s.p50 == pytest.approx(0.3)
    assert summary.ttft_s.n == 2 and summary.ttft_s.p99_reliable is False
    # the report carries the computed reliability flag
    assert summary.model_dump()["ttft_s"]["p99_reliable"] is False


def test_p99_reliable_from_100_samples() -> None:
    assert Distribution.of(range(100)).p99_reliable and not Distribution.of(range(99)).p99_reliable


def test_speedup() -> None:
    assert parallel_speedup(9.37, 3.09) == pytest.approx(3.03, abs=0.01)
    with pytest.raises(ValueError):
        parallel_speedup(1.0, 0.0)
