"""The vramcap side of a Locust run: its options, the server it plans and starts, and the end of it.

``install(events)`` registers the listeners a locustfile needs (locustfiles/agents.py):

* ``init_command_line_parser``: ``--vram-profile`` and the plugin's plan and engine options
  under the same names (``--vramcap-model``, ``--vramcap-agents``...), plus
  ``--vramcap-scenario`` and ``--vramcap-request-model``;
* ``init``: the scenario is loaded (every process); on the master or a local runner, with
  ``--vram-profile``, the plan is made and its server started (``environment.host`` is then
  its URL), or else ``--host`` is checked; a bad input is one ``vramcap: error:`` line and
  exit code 2, with no server left;
* ``test_start`` / ``test_stop``: the run's :class:`~.tally.LoadTally` starts and stops counting;
* ``report_to_master`` / ``worker_report``: a worker's output tokens and finished graphs travel to
  the master with Locust's own stats, so the master's counts (``--vramcap-graphs``, tokens/s) are
  the whole run's;
* ``quitting``: the server is stopped, and a graph scenario's proxy (Ctrl-C, ``-t``, SIGTERM and the
  web UI's stop all end here; the process group's atexit backstop covers the rest).

Workers start nothing: the master sends them its host and the model requests name; each worker
runs the scenario of its own ``--vramcap-scenario`` (give them the master's).
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from ..engines.base import Server
from ..errors import GraphError, ServerUnreachable, VramcapError
from ..load.scenario.graph_source import check_graph
from ..load.scenario.schema import load_scenario
from ..net import fetch, redact
from ..options import ENGINE_OPTIONS, PLAN_OPTIONS, add_options, with_run_defaults
from ..parsers import argparse_type, choice, non_empty, positive_int
from ..planner.output import plan_json
from ..planner.plan import Plan
from ..types import SERVED_ENGINES, EngineChoice
from .graphs import close_graph_hosts
from .users import AgentGraphUser
from .web import install_vram_tab

__all__ = ["AgentUser", "install", "server_from_options"]

DEFAULT_SCENARIO = "scenarios/research-fanout.yaml"
_PREFIX, _DEST = "vramcap-", "vramcap_"
_TABLE = tuple(option for option in (*PLAN_OPTIONS, *ENGINE_OPTIONS) if option.name != "profile")


class AgentUser(AgentGraphUser):
    """The agent graph of ``--vramcap-scenario``, as one Locust user."""


class _RunState:
    server: Server | None = None
    plan: dict[str, Any] | None = None
    """The started server's plan (``plan_json(plan)``), for the web UI's VRAM tab."""
    default_scenario: Path = Path(DEFAULT_SCENARIO)


_state = _RunState()


def add_arguments(parser: Any) -> None:
    """Our options on Locust's parser, kept out of the web UI's form (the server is planned before it opens)."""
    group = parser.add_argument_group("vramcap", "plan and start the server (--vram-profile), or use --host")

    def add(*flags: str, **kwargs: Any) -> None:
        group.add_argument(*flags, **kwargs).include_in_web_ui = False  # what LocustArgumentParser sets

    add("--vram-profile", dest="vram_profile", default=None, type=argparse_type(non_empty), metavar="PROFILE",
        help="plan for this VRAM budget and start the server (embedded llama-server by default); not with --host")
    add_options(add, _TABLE, prefix=_PREFIX, dest_prefix=_DEST, with_defaults=False)
    add("--vramcap-engine", dest="vramcap_engine", default="llamacpp", type=argparse_type(choice(SERVED_ENGINES)),
        help="with --vram-profile: llamacpp (default) or ollama")
    add("--vramcap-scenario", dest="vramcap_scenario", default=None, metavar="YAML",
        help=f"the agent graph each user runs (default {_state.default_scenario})")
    add("--vramcap-request-model", dest="vramcap_request_model", default=None, metavar="NAME",
        help="with --host: the model every request names (Ollama, vLLM)")
    add("--vramcap-graphs", dest="vramcap_graphs", default=None, type=argparse_type(positive_int), metavar="N",
        help="quit once N graphs have finished (a master counts its workers' graphs; -t still applies)")


def plan_values(parsed: Any) -> dict[str, Any]:
    """The plan options by ``dest`` from Locust's parsed options, with the plugin's defaults."""
    values = with_run_defaults({option.dest: getattr(parsed, _DEST + option.dest, None) for option in _TABLE},
                               _TABLE)
    values["profile"] = parsed.vram_profile
    return values


def server_from_options(values: Mapping[str, Any], engine: EngineChoice, *, prefix: str = "") -> tuple[Plan, Server]:
    """Plan from option values, print the plan to stderr and build its server (not started)."""
    from ..engines.provision import new_server, plan_for_engine
    from ..planner.output import format_plan

    plan, setup = plan_for_engine(values, engine, prefix=prefix)
    print(format_plan(plan), file=sys.stderr)
    return plan, new_server(plan, setup, announce=lambda line: print(line, file=sys.stderr))


def check_reachable(url: str, option: str = "--host") -> None:
    """Any HTTP answer from ``url``/v1/models (llama-server, Ollama, vLLM all have it); ServerUnreachable naming
    ``option`` if none."""
    try:
        fetch("GET", f"{url.rstrip('/')}/v1/models", deadline_s=10.0)
    except ServerUnreachable as exc:
        raise ServerUnreachable(f"cannot reach {option} {redact(url)}: {exc}") from None


def _exit(message: str) -> NoReturn:
    stop_server()
    print(f"vramcap: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def on_init(environment: Any, **_: Any) -> None:
    from locust.runners import WorkerRunner

    parsed = environment.parsed_options
    if parsed.vram_profile and parsed.host:
        _exit("--host and --vram-profile both given: attach to a server, or plan and start one, not both")
    try:
        AgentUser.scenario = load_scenario(Path(parsed.vramcap_scenario or _state.default_scenario))
        check_graph(AgentUser.scenario)  # a graph that cannot be imported stops the run here, in one line
        if isinstance(environment.runner, WorkerRunner):
            return  # the master plans, starts and names the host
        if parsed.vram_profile:
            plan, server = server_from_options(plan_values(parsed), parsed.vramcap_engine, prefix=_PREFIX)
            _state.plan, _state.server = plan_json(plan), server
            server.start()
            environment.host = server.url
            # Locust forwards custom options to workers with each spawn: they name the same model.
            parsed.vramcap_request_model = AgentUser.model = server.request_model
            print(f"vramcap: serving at {server.url}", file=sys.stderr, flush=True)
        elif parsed.host:
            check_reachable(parsed.host)
            AgentUser.model = parsed.vramcap_request_model
        _make_forwardable(parsed)
        if environment.web_ui is not None:
            install_vram_tab(environment.web_ui, plan=lambda: _state.plan, server_url=lambda: environment.host,
                             tally=lambda: AgentUser.tally)
    except VramcapError as exc:
        if isinstance(exc, GraphError) and exc.user_traceback:
            print(exc.user_traceback, file=sys.stderr)
        one_line = getattr(exc, "one_line", None)
        _exit(one_line() if callable(one_line) else str(exc))
    except OSError as exc:
        _exit(f"{exc.strerror or exc}")


def _make_forwardable(parsed: Any) -> None:
    """A master sends its custom options to workers with each spawn, through msgpack, which takes plain values
    only: our options are used by now, so a parsed ``Path`` travels as its text."""
    for name, value in vars(parsed).items():
        if name.startswith(_DEST) and not isinstance(value, str | int | float | bool | type(None)):
            setattr(parsed, name, str(value))


def stop_server() -> None:
    server, _state.server = _state.server, None
    if server is not None:
        server.stop()


def quit_after_graphs(runner: Any, count: int) -> None:
    """Spawn a watcher that quits ``runner`` once the run has finished ``count`` graphs (a master counts its
    workers' graphs as they report)."""
    import gevent

    def watch() -> None:
        while AgentUser.tally.graphs < count:
            gevent.sleep(0.05)
        runner.quit()

    gevent.spawn(watch)


def on_test_start(environment: Any, **_: Any) -> None:
    from locust.runners import WorkerRunner

    AgentUser.begin_run(keep_records=False)  # the tally has what the locustfile reports
    parsed = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner):
        AgentUser.model = getattr(parsed, "vramcap_request_model", None)
    elif getattr(parsed, "vramcap_graphs", None):
        quit_after_graphs(environment.runner, parsed.vramcap_graphs)


def on_test_stop(**_: Any) -> None:
    AgentUser.tally.stopped_at = time.monotonic()


def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    data["vramcap"] = AgentUser.tally.take_report()


def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if isinstance(data.get("vramcap"), dict):
        AgentUser.tally.merge(data["vramcap"], worker=client_id)


def finish_csv(environment: Any, prefix: str, stop_writer: Callable[[], None] | None = None) -> None:
    """The run's end in its CSV files, whole. Locust's writer rewrites them every CSV_STATS_INTERVAL_SEC and, at exit,
    closes them without a last write (locust/main.py shutdown, stats.StatsCSVFileWriter): a run that ends
    mid-interval left its last second out (a graph that counted toward --vramcap-graphs was missing). Waiting one
    interval lets it append the history file's last row; on a busy machine its last rewrite of the others could
    still come before the last graph (the CSV read 2 graphs of 3), so they are written here from the final stats
    (``stop_writer`` first, when the writer is ours to stop; Locust's own would rewrite the same)."""
    import csv

    import gevent
    from locust.stats import CSV_STATS_INTERVAL_SEC, PERCENTILES_TO_REPORT, StatsCSV

    gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.1)
    if stop_writer is not None:
        stop_writer()
    report = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("stats", report.requests_csv), ("failures", report.failures_csv),
                          ("exceptions", report.exceptions_csv)):
        with open(f"{prefix}_{suffix}.csv", "w", newline="", encoding="utf-8") as file:
            write(csv.writer(file))


def on_quitting(environment: Any, **_: Any) -> None:
    from locust.runners import MasterRunner, WorkerRunner

    stop_server()
    close_graph_hosts()
    if AgentUser.build_error is not None:  # a user's graph could not be built: the run was stopped for it
        text = AgentUser.build_error.shown("vramcap: error: ")
        # at exit: Locust prints its tables after this event, and the error must be what the run ends with
        atexit.register(lambda: print(text, file=sys.stderr, flush=True))
        environment.process_exit_code = 2
    tally, runner = AgentUser.tally, environment.runner
    csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if csv_prefix and not isinstance(runner, WorkerRunner):  # a worker's stats are not the run's
        finish_csv(environment, csv_prefix)
    rate = tally.overall_rate()
    if rate is not None and not isinstance(runner, WorkerRunner):
        whole = f"whole run, {len(tally.workers)} workers" if isinstance(runner, MasterRunner) else "whole run"
        print(f"vramcap: {tally.graphs} graphs, {tally.requests} requests ({tally.failed_requests} failed), "
              f"{tally.output_tokens} output tokens: {rate:.1f} tokens/s ({whole})", file=sys.stderr)


def install(events: Any, default_scenario: Path | None = None) -> None:
    """Register the listeners on Locust's ``events`` (a locustfile calls this once); ``default_scenario`` is the
    graph users run without ``--vramcap-scenario`` (else scenarios/research-fanout.yaml of the current directory)."""
    if default_scenario is not None:
        _state.default_scenario = default_scenario
    # Locust logs at INFO; httpx would add a line per health poll of the server we start, and httpx2 (the
    # openai client's, under langchain-openai) one per request a user's graph makes.
    for client_logger in ("httpx", "httpx2"):
        logging.getLogger(client_logger).setLevel(logging.WARNING)
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(on_init)
    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)
    events.report_to_master.add_listener(on_report_to_master)
    events.worker_report.add_listener(on_worker_report)
    events.quitting.add_listener(on_quitting)
