"""The vramcap side of a Locust run: its options, the server it plans and starts, and the end of it.

``install(events)`` registers the listeners a locustfile needs (locustfiles/agents.py):

* ``init_command_line_parser``: ``--vram-profile`` and the plugin's plan and engine options
  under the same names (``--vramcap-model``, ``--vramcap-agents``...), plus
  ``--vramcap-scenario`` and ``--vramcap-request-model``;
* ``init``: the run's :class:`~.state.VramcapRun` is attached to the Environment and the listeners below
  are added to ``environment.events``; the scenario is loaded (every process); on the master or a local
  runner, with ``--vram-profile``, the plan is made and its server started (``environment.host`` is then
  its URL), or else ``--host`` is checked; a bad input is one ``vramcap: error:`` line and
  exit code 2, with no server left;
* ``test_start`` / ``test_stop``: the run's counts (:class:`~.tally.LoadTally`) start and stop;
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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..defaults import DEFAULT_LOAD_SCENARIO
from ..errors import ServerUnreachable, VramcapError
from ..load.run.apps import check_graph
from ..load.scenario.schema import load_scenario
from ..net import fetch, redact
from ..options import EMULATE, ENGINE_OPTIONS, PLAN_OPTIONS, REQUEST_TIMEOUT, add_options, with_run_defaults
from ..parsers import argparse_type, choice, non_empty, positive_int
from ..planner.output import plan_json
from ..types import SERVED_ENGINES, EngineChoice
from .state import VramcapRun, attach, vramcap_run
from .users import AgentGraphUser
from .web import install_vram_tab

if TYPE_CHECKING:
    from argparse import ArgumentParser, Namespace

    from locust.env import Environment
    from locust.event import EventHook, Events
    from locust.runners import Runner

    from ..engines.base import Server
    from ..planner.plan import Plan

__all__ = ["AgentUser", "error_text", "install", "server_from_options"]

_PREFIX, _DEST = "vramcap-", "vramcap_"
_TABLE = tuple(option for option in (*PLAN_OPTIONS, *ENGINE_OPTIONS, REQUEST_TIMEOUT, EMULATE)
               if option.name != "profile")


class AgentUser(AgentGraphUser):
    """The agent graph of ``--vramcap-scenario``, as one Locust user."""


def add_arguments(parser: ArgumentParser, *, default_scenario: Path, **_: Any) -> None:
    """Our options on Locust's parser, kept out of the web UI's form (the server is planned before it opens)."""
    group = parser.add_argument_group("vramcap", "plan and start the server (--vram-profile), or use --host")

    def add(*flags: str, **kwargs: Any) -> None:
        # what LocustArgumentParser sets on an option the web UI's form leaves out
        group.add_argument(*flags, **kwargs).include_in_web_ui = False  # type: ignore[attr-defined]

    add("--vram-profile", dest="vram_profile", default=None, type=argparse_type(non_empty), metavar="PROFILE",
        help="plan for this VRAM budget and start the server (embedded llama-server by default); not with --host")
    add_options(add, _TABLE, prefix=_PREFIX, dest_prefix=_DEST, with_defaults=False)
    add("--vramcap-engine", dest="vramcap_engine", default="llamacpp", type=argparse_type(choice(SERVED_ENGINES)),
        help="with --vram-profile: llamacpp (default) or ollama")
    add("--vramcap-scenario", dest="vramcap_scenario", default=None, metavar="YAML",
        help=f"the agent graph each user runs (default {default_scenario})")
    add("--vramcap-request-model", dest="vramcap_request_model", default=None, metavar="NAME",
        help="with --host: the model every request names (Ollama, vLLM)")
    add("--vramcap-graphs", dest="vramcap_graphs", default=None, type=argparse_type(positive_int), metavar="N",
        help="quit once N graphs have finished (a master counts its workers' graphs; -t still applies)")


def plan_values(parsed: Namespace) -> dict[str, Any]:
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


def error_text(exc: VramcapError) -> str:
    """The end of a run that a VramcapError stopped, as the ``vramcap`` command shows it: one ``vramcap: error:``
    line (a graph's traceback above it; a server's start-up failure as its cause, the log tail left in its log)."""
    return exc.shown("vramcap: error: ")


def _exit(run: VramcapRun, text: str) -> NoReturn:
    run.stop_server()
    print(text, file=sys.stderr, flush=True)
    sys.exit(2)


def on_init(environment: Environment, *, default_scenario: Path, **_: Any) -> None:
    """Attach the run's state and listeners; load the scenario; start the planned server or check ``--host``."""
    from locust.runners import WorkerRunner

    run = attach(environment, VramcapRun())
    listen(environment.events, run)
    parsed = environment.parsed_options
    if parsed is None:  # a library run (run.py) sets up its own
        return
    if parsed.vram_profile and parsed.host:
        _exit(run, "vramcap: error: --host and --vram-profile both given: attach to a server, or plan and start one, "
                   "not both")
    run.request_timeout_s = request_timeout(parsed)
    try:
        run.scenario = load_scenario(Path(parsed.vramcap_scenario or default_scenario))
        check_graph(run.scenario)  # a graph that cannot be imported stops the run here, in one line
        if isinstance(environment.runner, WorkerRunner):
            return  # the master plans, starts and names the host
        if parsed.vram_profile:
            plan, server = server_from_options(plan_values(parsed), parsed.vramcap_engine, prefix=_PREFIX)
            run.plan, run.server = plan_json(plan), server
            server.start()
            environment.host = server.url
            # Locust forwards custom options to workers with each spawn: they name the same model.
            parsed.vramcap_request_model = run.model = server.request_model
            print(f"vramcap: serving at {server.url}", file=sys.stderr, flush=True)
        elif parsed.host:
            check_reachable(parsed.host)
            run.model = parsed.vramcap_request_model
        _make_forwardable(parsed)
        if environment.web_ui is not None:
            install_vram_tab(environment.web_ui, plan=lambda: run.plan, server_url=lambda: environment.host,
                             tally=lambda: run.tally, emulated=lambda: _emulation(run.server))
    except VramcapError as exc:
        _exit(run, error_text(exc))
    except OSError as exc:
        _exit(run, f"vramcap: error: {exc.strerror or exc}")


def _emulation(server: Server | None) -> dict[str, Any] | None:
    from ..engines.emulated import EmulatedServer

    return server.emulation() if isinstance(server, EmulatedServer) else None


def request_timeout(parsed: Namespace | None) -> float:
    """``--vramcap-request-timeout``, or its default."""
    value = getattr(parsed, _DEST + REQUEST_TIMEOUT.dest, None)
    return float(value) if value is not None else float(REQUEST_TIMEOUT.default)


def _make_forwardable(parsed: Namespace) -> None:
    """A master sends its custom options to workers with each spawn, through msgpack, which takes plain values
    only: our options are used by now, so a parsed ``Path`` travels as its text."""
    for name, value in vars(parsed).items():
        if name.startswith(_DEST) and not isinstance(value, str | int | float | bool | type(None)):
            setattr(parsed, name, str(value))


def quit_after_graphs(runner: Runner, count: int) -> None:
    """Spawn a watcher that quits ``runner`` once its run has finished ``count`` graphs (a master counts its
    workers' graphs as they report)."""
    import gevent

    run = vramcap_run(runner.environment)

    def watch() -> None:
        while run.tally.graphs < count:
            gevent.sleep(0.05)
        runner.quit()

    gevent.spawn(watch)


def on_test_start(environment: Environment, **_: Any) -> None:
    from locust.runners import WorkerRunner

    run = vramcap_run(environment)
    run.begin()
    parsed, runner = environment.parsed_options, environment.runner
    graphs: int | None = getattr(parsed, "vramcap_graphs", None)
    if isinstance(runner, WorkerRunner):
        run.model = getattr(parsed, "vramcap_request_model", None)
        run.request_timeout_s = request_timeout(parsed)
    elif runner is not None and graphs:
        quit_after_graphs(runner, graphs)


def on_test_stop(environment: Environment, **_: Any) -> None:
    vramcap_run(environment).tally.stopped_at = time.monotonic()


def on_report_to_master(run: VramcapRun, client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["vramcap"] = run.tally.take_report()


def on_worker_report(run: VramcapRun, client_id: str, data: dict[str, Any], **_: Any) -> None:
    if isinstance(data.get("vramcap"), dict):
        run.tally.merge(data["vramcap"], worker=client_id)


def finish_csv(environment: Environment, prefix: str, stop_writer: Callable[[], None] | None = None) -> None:
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


def on_quitting(environment: Environment, **_: Any) -> None:
    from locust.runners import MasterRunner, WorkerRunner

    run = vramcap_run(environment)
    run.close()
    if run.build_error is not None:  # a user's graph could not be built: the run was stopped for it
        text = error_text(run.build_error)
        # at exit: Locust prints its tables after this event, and the error must be what the run ends with
        atexit.register(lambda: print(text, file=sys.stderr, flush=True))
        environment.process_exit_code = 2
    tally, runner = run.tally, environment.runner
    csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if csv_prefix and not isinstance(runner, WorkerRunner):  # a worker's stats are not the run's
        finish_csv(environment, csv_prefix)
    rate = tally.overall_rate()
    if rate is not None and not isinstance(runner, WorkerRunner):
        whole = f"whole run, {len(tally.workers)} workers" if isinstance(runner, MasterRunner) else "whole run"
        print(f"vramcap: {tally.graphs} graphs, {tally.requests} requests ({tally.failed_requests} failed), "
              f"{tally.output_tokens} output tokens: {rate:.1f} tokens/s ({whole})", file=sys.stderr)


def listen(events: Events, run: VramcapRun) -> None:
    """The listeners of ``run``, on its Environment's ``events`` (``init`` adds them, once per Environment; the
    worker report events name no Environment, so theirs are bound to the run)."""
    _on(events.test_start, on_test_start)
    _on(events.test_stop, on_test_stop)
    _on(events.report_to_master, partial(on_report_to_master, run))
    _on(events.worker_report, partial(on_worker_report, run))
    _on(events.quitting, on_quitting)


def install(events: Events, default_scenario: Path | None = None) -> None:
    """Register the listeners on Locust's ``events`` (a locustfile calls this once); ``default_scenario`` is the
    graph users run without ``--vramcap-scenario`` (else :data:`~pytest_vramcap.defaults.DEFAULT_LOAD_SCENARIO`
    of the current directory)."""
    scenario = default_scenario if default_scenario is not None else Path(DEFAULT_LOAD_SCENARIO)
    # Locust logs at INFO; httpx would add a line per health poll of the server we start, and httpx2 (the
    # openai client's, under langchain-openai) one per request a user's graph makes.
    for client_logger in ("httpx", "httpx2"):
        logging.getLogger(client_logger).setLevel(logging.WARNING)
    _on(events.init_command_line_parser, partial(add_arguments, default_scenario=scenario))
    _on(events.init, partial(on_init, default_scenario=scenario))


def _on(hook: EventHook, listener: Callable[..., None]) -> None:
    """``hook.add_listener(listener)``, typed (Locust's EventHook is not)."""
    hook.add_listener(listener)  # type: ignore[no-untyped-call]
