"""The whole run's counts across Locust processes (locust/tally.py) and the bucketed summary of one process's
requests (load/results.py), without Locust."""

from __future__ import annotations

import json
import random

import pytest

from pytest_vramcap.engines.honoured import audit
from pytest_vramcap.load.measure.metrics import summarize
from pytest_vramcap.load.measure.stream import RequestRecord
from pytest_vramcap.load.results import Histogram, LoadStats, bucket
from pytest_vramcap.locust.tally import RATE_WINDOW_S, LoadTally
from pytest_vramcap.report.output_budget import budget_verdict


def test_a_master_counts_what_each_worker_reported_once() -> None:
    workers = [LoadTally(started_at=0.0), LoadTally(started_at=0.0)]
    master = LoadTally(started_at=0.0)
    workers[0].add_request(6, ok=True, now=1.0)
    workers[0].add_graph(ok=True)
    workers[1].add_request(4, ok=False, now=1.5)
    workers[1].add_graph(ok=False)
    for name, worker in zip(("w0", "w1"), workers, strict=True):
        master.merge(json.loads(json.dumps(worker.take_report())), worker=name, now=2.0)  # reports travel as data
    workers[0].add_request(6, ok=True, now=3.0)
    master.merge(workers[0].take_report(), worker="w0", now=4.0)
    master.merge(workers[1].take_report(), worker="w1", now=4.0)  # nothing new: nothing counted twice
    assert (master.output_tokens, master.requests, master.failed_requests, master.graphs, master.failed_graphs) == \
        (16, 3, 1, 2, 1)
    assert master.workers == {"w0", "w1"}
    forwarded = master.take_report()  # a master does not forward what it merged
    assert {value for name, value in forwarded.items() if name != "budget"} == {0}
    assert forwarded["budget"]["audited"] == 0
    assert workers[0].output_tokens == 12  # a worker keeps its own totals after reporting


def over_budget(label: str, n_out: int) -> RequestRecord:
    """A request through the proxy to Ollama that asked max_completion_tokens 48 (which Ollama's /v1 drops)."""
    made = RequestRecord(label=label, t_send=0.0, t_first=0.1, t_last=1.0, n_out=n_out, n_out_source="usage")
    made.audit = audit("ollama", "chat/completions", {"model": "m", "messages": [], "max_completion_tokens": 48})
    return made


def test_the_output_budget_adds_up_across_workers_and_names_the_field() -> None:
    workers = [LoadTally(started_at=0.0), LoadTally(started_at=0.0)]
    master = LoadTally(started_at=0.0)
    workers[0].add_audit(over_budget("research", 900))
    workers[0].add_audit(over_budget("research", 40))
    workers[1].add_audit(over_budget("synthesis", 700))
    workers[1].add_audit(RequestRecord(label="yaml", t_send=0.0))  # not through the proxy: not counted
    for name, worker in zip(("w0", "w1"), workers, strict=True):
        master.merge(json.loads(json.dumps(worker.take_report())), worker=name)
        assert worker.take_report()["budget"]["audited"] == 0  # reported once
    budget = master.budget
    assert (budget.audited, budget.judged, budget.over) == (3, 3, 2)
    verdict = budget_verdict(budget)
    assert verdict.outcome == "fail" and verdict.summary.startswith("2 request(s) generated past")
    assert verdict.evidence[0].startswith("research: asked max_completion_tokens 48, generated 900")
    assert "research: ollama dropped max_completion_tokens x2" in verdict.evidence


def test_rates_cover_the_last_window_and_the_whole_run() -> None:
    tally = LoadTally(started_at=0.0)
    tally.add_request(100, ok=True, now=1.0)
    assert tally.rate(now=5.0) == pytest.approx(100 / 5.0)  # less than a window since start
    tally.add_request(50, ok=True, now=RATE_WINDOW_S + 5.0)
    assert tally.rate(now=RATE_WINDOW_S + 5.0) == pytest.approx(50 / RATE_WINDOW_S)  # the first left the window
    tally.stopped_at = 30.0
    assert tally.overall_rate(now=1000.0) == pytest.approx(150 / 30.0)  # ends at test stop
    assert LoadTally().overall_rate() is None and LoadTally().rate() == 0.0


def test_the_bucketed_summary_is_summarize_within_half_a_percent_and_stays_small() -> None:
    """``vramcap load``'s summary comes from counts (load/results.py), not the records: counts, tokens, tokens/s,
    n, mean and max are exact; each percentile is within 0.5 % of metrics.summarize's over the same requests."""
    rng = random.Random(7)
    records = []
    for i in range(5000):
        t_send = i * 0.01
        ttft = rng.lognormvariate(-1.5, 1.0)
        n_out = rng.randint(1, 64)
        t_last = t_send + ttft + n_out * rng.uniform(0.004, 0.05)
        failed = i % 97 == 0
        records.append(RequestRecord(label="a", t_send=t_send, t_first=t_send + ttft, t_last=t_last, n_out=n_out,
                                     error="cut" if failed else None, error_kind="connection" if failed else None))
    stats = LoadStats()
    for record in records:
        stats.add_request(record)
    bucketed, exact = stats.summary(), summarize(records)
    assert bucketed.model_dump(exclude={"ttft_s", "tpot_s", "e2e_s"}) == exact.model_dump(
        exclude={"ttft_s", "tpot_s", "e2e_s"})
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        ours, theirs = getattr(bucketed, name), getattr(exact, name)
        assert (ours.n, ours.max) == (theirs.n, theirs.max) and ours.mean == pytest.approx(theirs.mean)
        for stat in ("p50", "p90", "p95", "p99"):
            assert getattr(ours, stat) == pytest.approx(getattr(theirs, stat), rel=0.005), (name, stat)
    assert len(stats.e2e.counts) <= 900 * 4  # E2E spans under four decades here: at most 900 buckets a decade


def test_a_histogram_of_one_value_and_of_none() -> None:
    histogram = Histogram()
    assert histogram.distribution() is None
    histogram.add(1.23456)
    one = histogram.distribution()
    assert one is not None and one.max == 1.23456 and one.p50 == one.p99 == 1.23  # rounded, never above max
    assert bucket(0.0) == bucket(1e-9) == 0.0 and bucket(0.012345) == 0.0123 and bucket(123.456) == 123.0
