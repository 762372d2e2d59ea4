"""A headless Locust run through Locust's library API: ``vramcap load`` and the pytest gate run this.

One local runner (``Environment.create_local_runner``) with :class:`~.locust_setup.AgentUser`,
a user count, a spawn rate and a duration; Locust's own CSV and HTML reports when asked
for; and a :class:`LoadResult` summarised by the project's metric formulas
(load/metrics.py) from every request the users finished.

Importing this module imports Locust, which monkey-patches the process for gevent: call it
from a process of its own (the ``vramcap`` command), never from the pytest process.
"""

from __future__ import annotations

import time
from pathlib import Path

import gevent
from locust import events
from locust.env import Environment

from .locust_setup import AgentUser, quit_after_graphs
from .metrics import Distribution, summarize
from .results import LoadResult
from .scenarios import Scenario
from .tally import LoadTally

__all__ = ["run_load"]


def run_load(scenario: Scenario, url: str, *, users: int, spawn_rate: float, duration_s: float,
             model: str | None = None, csv_prefix: str | None = None, html_path: Path | None = None,
             max_graphs: int | None = None) -> LoadResult:
    """Run ``users`` agent graphs against ``url`` for ``duration_s`` seconds, or until ``max_graphs`` graphs have
    finished."""
    from locust.html import get_html_report
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

    AgentUser.scenario, AgentUser.model, AgentUser.records = scenario, model, []
    AgentUser.tally = tally = LoadTally(started_at=time.monotonic())
    environment = Environment(user_classes=[AgentUser], events=events, host=url)
    runner = environment.create_local_runner()
    writer = None
    if csv_prefix:
        writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, csv_prefix, full_history=False)
        gevent.spawn(writer)
    start = time.monotonic()
    runner.start(users, spawn_rate=spawn_rate)
    gevent.spawn_later(duration_s, runner.quit)
    if max_graphs is not None:
        quit_after_graphs(runner, max_graphs)
    runner.greenlet.join()
    elapsed = time.monotonic() - start
    if writer is not None:
        writer.close_files()
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(get_html_report(environment, show_download_link=False),  # type: ignore[no-untyped-call]
                             encoding="utf-8")
    failures = {str(error.error): error.occurrences for error in environment.stats.errors.values()}
    return LoadResult(scenario=scenario.name, users=users, duration_s=elapsed, summary=summarize(AgentUser.records),
                      graph_s=Distribution.of(wall for wall, ok in tally.graph_walls if ok), graphs=tally.graphs,
                      failed_graphs=sum(not ok for _, ok in tally.graph_walls), locust_failures=failures)

