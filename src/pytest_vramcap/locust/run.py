"""Headless Locust runs through Locust's library API: ``vramcap load`` (and the pytest gate) and ``vramcap capacity``.

One local runner (``Environment.create_local_runner``) with :class:`~.setup.AgentUser`, and the run's
:class:`~.state.VramcapRun` attached to its Environment. :func:`run_load`: a user count, a spawn rate and a
duration; Locust's own CSV and HTML reports when asked for; and a :class:`LoadResult` summarised by the
project's metric formulas from the run's bucketed counts (load/results.py's LoadStats: no request is kept).
:func:`run_capacity`: a :class:`StepShape` (Locust's LoadTestShape) adds agents step by step until TTFT p95
breaks its limit (load/capacity.py judges each step from the counts of that step).

Importing this module imports Locust, which monkey-patches the process for gevent: call it
from a process of its own (the ``vramcap`` command), never from the pytest process.
"""

from __future__ import annotations

import time
from pathlib import Path

import gevent
from locust import LoadTestShape, events
from locust.env import Environment

from ..defaults import DEFAULT_REQUEST_TIMEOUT_S
from ..load.capacity import CapacityResult, StepResult, StepTally, judge_step
from ..load.results import LoadResult
from ..load.scenario.schema import Scenario
from .setup import AgentUser, finish_csv, quit_after_graphs
from .state import VramcapRun, attach, vramcap_run

__all__ = ["StepShape", "run_capacity", "run_load"]


def _environment(scenario: Scenario, url: str, model: str | None, shape: LoadTestShape | None = None,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> tuple[Environment, VramcapRun]:
    environment = Environment(user_classes=[AgentUser], events=events, host=url, shape_class=shape)
    run = attach(environment, VramcapRun(scenario=scenario, model=model, request_timeout_s=request_timeout_s))
    run.begin()
    return environment, run


def _raise_build_error(run: VramcapRun) -> None:
    """A user's graph could not be built, which stopped the run: the run's answer is that error."""
    if run.build_error is not None:
        raise run.build_error


def run_load(scenario: Scenario, url: str, *, users: int, spawn_rate: float, duration_s: float,
             model: str | None = None, csv_prefix: str | None = None, html_path: Path | None = None,
             max_graphs: int | None = None, request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> LoadResult:
    """Run ``users`` agent graphs against ``url`` for ``duration_s`` seconds, or until ``max_graphs`` graphs have
    finished."""
    from locust.html import get_html_report
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

    environment, run = _environment(scenario, url, model, request_timeout_s=request_timeout_s)
    runner = environment.create_local_runner()
    writer = writing = None
    if csv_prefix:
        writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, csv_prefix, full_history=False)
        writing = gevent.spawn(writer)
    start = time.monotonic()
    runner.start(users, spawn_rate=spawn_rate)
    gevent.spawn_later(duration_s, runner.quit)
    if max_graphs is not None:
        quit_after_graphs(runner, max_graphs)
    try:
        runner.greenlet.join()
    finally:
        run.close()
    _raise_build_error(run)
    elapsed = time.monotonic() - start
    if writer is not None and writing is not None and csv_prefix:
        finish_csv(environment, csv_prefix, writing.kill)
        writer.close_files()
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(get_html_report(environment, show_download_link=False),  # type: ignore[no-untyped-call]
                             encoding="utf-8")
    failures = {str(error.error): error.occurrences for error in environment.stats.errors.values()}
    return LoadResult(scenario=scenario.name, users=users, duration_s=elapsed, summary=run.stats.summary(),
                      graph_s=run.stats.graph_times.distribution(), graphs=run.tally.graphs,
                      failed_graphs=run.tally.failed_graphs, locust_failures=failures,
                      output_budget=run.tally.budget.to_dict())


class StepShape(LoadTestShape):
    """``start``, ``start + step``, ... concurrent agents, ``step_s`` seconds each (longer until as many requests
    as agents were sent in it), until a step misses TTFT p95 <= ``ttft_p95_s`` or ``max_users`` have had their
    step; every step's result is in :attr:`steps`. The step under way is counted on the run's state
    (``VramcapRun.step``) as its requests end; a tick judges it from those counts and the requests in flight."""

    abstract = True  # built by run_capacity with its numbers, never picked up from a locustfile

    def __init__(self, *, start: int, step: int, max_users: int, step_s: float, ttft_p95_s: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.start, self.step, self.max_users, self.step_s, self.ttft_p95_s = start, step, max_users, step_s, ttft_p95_s
        self.steps: list[StepResult] = []

    def users_at(self, index: int) -> int:
        return min(self.start + index * self.step, self.max_users)

    def tick(self) -> tuple[int, float] | None:
        now = time.monotonic()
        assert self.runner is not None  # Locust's runner sets itself before it ticks
        run = vramcap_run(self.runner.environment)
        if run.step is None:
            run.step = StepTally(start=now)
        elif now - run.step.start >= self.step_s:
            users = self.users_at(len(self.steps))
            result = judge_step(users, run.step, run.open_requests.values(), now, self.ttft_p95_s)
            if result.requests >= users:  # a busy machine may start the agents late: judge once each has asked
                self.steps.append(result)
                if not result.met or users >= self.max_users:
                    return None
                run.step = StepTally(start=now)
        users = self.users_at(len(self.steps))
        return users, float(users)  # the whole step's agents at once: a step is one level of concurrency


def run_capacity(scenario: Scenario, url: str, *, model: str | None, start: int, step: int, max_users: int,
                 step_s: float, ttft_p95_s: float,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> CapacityResult:
    """Ramp concurrent agents against ``url`` until TTFT p95 breaks ``ttft_p95_s``; the steps and the knee."""
    shape = StepShape(start=start, step=step, max_users=max_users, step_s=step_s, ttft_p95_s=ttft_p95_s)
    environment, run = _environment(scenario, url, model, shape, request_timeout_s)
    runner = environment.create_local_runner()
    runner.start_shape()
    try:
        if runner.shape_greenlet is not None:
            runner.shape_greenlet.join()  # tick() returned None: the ramp is over
        runner.quit()
    finally:
        run.close()
    _raise_build_error(run)
    return CapacityResult(scenario=scenario.name, ttft_p95_s=ttft_p95_s, max_users=max_users, steps=shape.steps)
