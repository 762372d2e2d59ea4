"""The whole run's counts across Locust processes (load/tally.py), without Locust."""

from __future__ import annotations

import json

import pytest

from pytest_vramcap.locust.tally import RATE_WINDOW_S, LoadTally


def test_a_master_counts_what_each_worker_reported_once() -> None:
    workers = [LoadTally(started_at=0.0), LoadTally(started_at=0.0)]
    master = LoadTally(started_at=0.0)
    workers[0].add_request(6, ok=True, now=1.0)
    workers[0].add_graph(0.2, ok=True)
    workers[1].add_request(4, ok=False, now=1.5)
    for name, worker in zip(("w0", "w1"), workers, strict=True):
        master.merge(json.loads(json.dumps(worker.take_report())), worker=name, now=2.0)  # reports travel as data
    workers[0].add_request(6, ok=True, now=3.0)
    master.merge(workers[0].take_report(), worker="w0", now=4.0)
    master.merge(workers[1].take_report(), worker="w1", now=4.0)  # nothing new: nothing counted twice
    assert (master.output_tokens, master.requests, master.failed_requests, master.graphs) == (16, 3, 1, 1)
    assert master.workers == {"w0", "w1"}
    assert master.take_report()["requests"] == 0  # a master does not forward what it merged
    assert workers[0].output_tokens == 12  # a worker keeps its own totals after reporting


def test_rates_cover_the_last_window_and_the_whole_run() -> None:
    tally = LoadTally(started_at=0.0)
    tally.add_request(100, ok=True, now=1.0)
    assert tally.rate(now=5.0) == pytest.approx(100 / 5.0)  # less than a window since start
    tally.add_request(50, ok=True, now=RATE_WINDOW_S + 5.0)
    assert tally.rate(now=RATE_WINDOW_S + 5.0) == pytest.approx(50 / RATE_WINDOW_S)  # the first left the window
    tally.stopped_at = 30.0
    assert tally.overall_rate(now=1000.0) == pytest.approx(150 / 30.0)  # ends at test stop
    assert LoadTally().overall_rate() is None and LoadTally().rate() == 0.0
