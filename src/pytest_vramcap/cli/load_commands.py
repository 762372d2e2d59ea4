"""``vramcap load`` and ``vramcap capacity``: Locust runs against a server planned and started here, or given.

Both import Locust first when they run (it monkey-patches the process for gevent before anything
opens a socket); the rest of the command never imports it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..defaults import DEFAULT_LOAD_SCENARIO
from ..errors import BadInputError
from ..net import http_url
from ..options import ENGINE_OPTIONS, PLAN_OPTIONS, REQUEST_TIMEOUT, add_options, with_run_defaults
from ..parsers import argparse_type, choice, load_slo, positive_float, positive_int
from ..types import SERVED_ENGINES
from .exits import EXIT_DOES_NOT_FIT, EXIT_OK

if TYPE_CHECKING:
    from ..planner.plan import Plan

__all__ = ["add_capacity_options", "add_load_options", "run_capacity", "run_load"]

_positive_int = argparse_type(positive_int)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    """The server a load runs against: planned and started (plan options, --engine), or --server-url."""
    add_options(parser.add_argument, PLAN_OPTIONS, with_defaults=False)
    add_options(parser.add_argument, ENGINE_OPTIONS)
    parser.add_argument("--engine", type=argparse_type(choice(SERVED_ENGINES)), default="llamacpp",
                        help="the server to plan and start: llamacpp (default) or ollama")
    parser.add_argument("--server-url", type=argparse_type(http_url), default=None, metavar="URL",
                        help="load this OpenAI-compatible server instead of starting one")
    parser.add_argument("--request-model", default=None, metavar="NAME", help="with --server-url: the model to name")
    add_options(parser.add_argument, (REQUEST_TIMEOUT,))


def add_load_options(load: argparse.ArgumentParser) -> None:
    _add_target_options(load)
    load.add_argument("--scenario", default=DEFAULT_LOAD_SCENARIO, metavar="YAML",
                      help=f"the agent graph every user runs (default {DEFAULT_LOAD_SCENARIO})")
    load.add_argument("--users", type=_positive_int, default=4, metavar="N", help="concurrent users (default 4)")
    load.add_argument("--spawn-rate", type=argparse_type(positive_float), default=None, metavar="R",
                      help="users started per second (default: all at once)")
    load.add_argument("--run-time", type=argparse_type(positive_float), default=60.0, metavar="S",
                      help="seconds of load (default 60)")
    load.add_argument("--graphs", type=_positive_int, default=None, metavar="N",
                      help="stop once N graphs have finished (or at --run-time, whichever comes first)")
    load.add_argument("--slo", type=argparse_type(load_slo), action="append", default=[], metavar="NAME=VALUE",
                      help="fail (exit 1) unless met: ttft_p95_s=2.5, tpot_p50_s=0.1, failure_ratio=0.01, "
                           "output_tps=30 (a floor), graph_p95_s=20...; repeatable")
    load.add_argument("--csv", default=None, metavar="PREFIX", help="Locust's CSV files (PREFIX_stats.csv...)")
    load.add_argument("--html", type=Path, default=None, metavar="FILE", help="Locust's HTML report")
    load.add_argument("--json", type=Path, default=None, metavar="FILE", help="the summary and verdicts as JSON")


def add_capacity_options(capacity: argparse.ArgumentParser) -> None:
    _add_target_options(capacity)
    capacity.add_argument("--ttft-p95", type=argparse_type(positive_float), default=2.0, metavar="S",
                          help="the objective: TTFT p95 at most S seconds (default 2)")
    capacity.add_argument("--scenario", default=None, metavar="YAML",
                          help="what each user runs (default: one agent asking one request after another, so "
                               "users = concurrent agents)")
    capacity.add_argument("--start-users", type=_positive_int, default=1, metavar="N", help="the first step (1)")
    capacity.add_argument("--step-users", type=_positive_int, default=1, metavar="N", help="agents added per step (1)")
    capacity.add_argument("--max-users", type=_positive_int, default=None, metavar="N",
                          help="stop the ramp here (default: twice the plan's slots, at least 8; 16 with --server-url)")
    capacity.add_argument("--step-time", type=argparse_type(positive_float), default=15.0, metavar="S",
                          help="seconds per step (default 15)")
    capacity.add_argument("--json", type=Path, default=None, metavar="FILE", help="the steps and the knee as JSON")


@contextmanager
def _load_target(args: argparse.Namespace) -> Iterator[tuple[str, str | None, Plan | None]]:
    """The server a load runs against, as (url, model requests name, plan): --server-url checked, or the plan
    started here and stopped after."""
    from ..locust.setup import check_reachable, server_from_options

    if args.server_url and args.model:
        raise BadInputError("--server-url and --model both given: load a running server, or plan and start one")
    if args.server_url:
        check_reachable(args.server_url, "--server-url")
        yield args.server_url, args.request_model, None
        return
    plan, server = server_from_options(with_run_defaults(vars(args), PLAN_OPTIONS), args.engine)
    try:
        yield server.start().url, server.request_model, plan
    finally:
        server.stop()


def run_load(args: argparse.Namespace) -> int:
    import locust  # noqa: F401  first: gevent monkey-patches the process before anything opens a socket

    from ..load.run.apps import check_graph
    from ..load.scenario.schema import load_scenario
    from ..locust.run import run_load
    from ..report.load_output import LoadReport, format_load
    from ..report.verdicts import load_verdicts

    scenario = load_scenario(args.scenario)
    check_graph(scenario)  # before a server starts
    with _load_target(args) as (url, model, _):
        result = run_load(scenario, url, users=args.users, spawn_rate=args.spawn_rate or args.users,
                          duration_s=args.run_time, model=model, csv_prefix=args.csv, html_path=args.html,
                          max_graphs=args.graphs, request_timeout_s=args.request_timeout)
    report = LoadReport.of(result, load_verdicts(result, args.slo))
    print(format_load(report))
    if args.json is not None:
        args.json.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return EXIT_OK if report.passed else EXIT_DOES_NOT_FIT


def run_capacity(args: argparse.Namespace) -> int:
    import locust  # noqa: F401  first: gevent monkey-patches the process before anything opens a socket

    from ..load.capacity import CAPACITY_SCENARIO, capacity_json, format_capacity
    from ..load.run.apps import check_graph
    from ..load.scenario.schema import load_scenario
    from ..locust.run import run_capacity

    scenario = load_scenario(args.scenario) if args.scenario else CAPACITY_SCENARIO
    check_graph(scenario)
    if args.max_users is not None and args.start_users > args.max_users:  # before a server starts
        raise BadInputError(f"--start-users {args.start_users} is above --max-users {args.max_users}")
    with _load_target(args) as (url, model, plan):
        slots = plan.config.parallel if plan is not None else None
        max_users = max(args.max_users or (max(8, 2 * slots) if slots else 16), args.start_users)
        result = run_capacity(scenario, url, model=model, start=args.start_users, step=args.step_users,
                              max_users=max_users, step_s=args.step_time, ttft_p95_s=args.ttft_p95,
                              request_timeout_s=args.request_timeout)
    result.planned_slots, result.profile = slots, plan.profile.name if plan is not None else None
    print(format_capacity(result))
    if args.json is not None:
        args.json.write_text(json.dumps(capacity_json(result), indent=2) + "\n", encoding="utf-8")
    return EXIT_OK if result.knee is not None else EXIT_DOES_NOT_FIT
