"""A Locust run's vramcap state, on its Environment (Locust's env.py way: per-run state lives there).

One :class:`VramcapRun` is attached to each Environment: by the locustfile's ``init`` listener
(setup.py) in every process, master and workers alike, and by ``vramcap load`` / ``vramcap capacity``
(run.py) before their runner starts. Users (``self.environment``), event listeners (``environment``) and the
capacity shape (``self.runner.environment``) find it with :func:`vramcap_run`; nothing of a run is kept on a
class or in a module. What it counts stays bounded however long the run: counts and histograms
(:class:`~pytest_vramcap.load.results.LoadStats`, :class:`~.tally.LoadTally`), the requests in flight, and the
capacity ramp's current step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..defaults import DEFAULT_REQUEST_TIMEOUT_S
from ..load.capacity import StepTally
from ..load.measure.record import RequestRecord
from ..load.results import LoadStats
from .graphs import GraphHosts
from .tally import LoadTally

if TYPE_CHECKING:
    from locust.env import Environment

    from ..engines.base import Server
    from ..errors import GraphError
    from ..load.scenario.schema import Scenario

__all__ = ["VramcapRun", "attach", "vramcap_run"]

_ATTRIBUTE = "vramcap"
"""The Environment's attribute that holds the run (``environment.vramcap``)."""


@dataclass(eq=False)
class VramcapRun:
    """What vramcap keeps for one Locust run in one process."""

    scenario: Scenario | None = None
    """The graph every user runs."""
    model: str | None = None
    """The ``model`` every request names (Ollama's created model); None for a server with one model."""
    server: Server | None = None
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    """How long the engine may stay silent in one request before it fails as a timeout."""
    """The server this process planned and started (a locustfile's master or local runner), stopped at the end."""
    plan: dict[str, Any] | None = None
    """The started server's plan (``plan_json(plan)``), for the web UI's VRAM tab."""
    tally: LoadTally = field(default_factory=LoadTally)
    """Output tokens and finished graphs; a master's also holds what its workers reported (tally.py)."""
    stats: LoadStats = field(default_factory=LoadStats)
    """This process's finished requests and graphs, bucketed: ``vramcap load``'s summary."""
    step: StepTally | None = None
    """The capacity ramp's current step (run.py's StepShape), counted as requests end."""
    open_requests: dict[int, RequestRecord] = field(default_factory=dict)
    """This process's requests in flight (by ``id``), shared by its users' clients."""
    build_error: GraphError | None = None
    """The first user's graph that could not be built: the run stops, and its end shows the user's traceback and
    one line (``vramcap load`` raises it, the locustfile exits 2)."""
    graph_hosts: GraphHosts = field(default_factory=GraphHosts)
    """The event loop and proxies a user's graph runs on (graphs.py), closed at the run's end."""

    def begin(self) -> None:
        """Count a new test from now (a run's start, or each start in the web UI)."""
        self.tally = LoadTally(started_at=time.monotonic())
        self.stats = LoadStats()
        self.step = None
        self.open_requests.clear()  # in place: the clients of users still alive hold this dict
        self.build_error = None
        self.graph_hosts.new_test()

    def request_ended(self, record: RequestRecord) -> None:
        """A request a user reported (finished or failed)."""
        self.tally.add_request(record.n_out, record.ok)
        self.tally.add_audit(record)
        self.stats.add_request(record)
        if self.step is not None:
            self.step.add(record)

    def graph_ended(self, wall_s: float, ok: bool) -> None:
        self.tally.add_graph(ok)
        self.stats.add_graph(wall_s, ok)

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def close(self) -> None:
        """The run's end in this process: the server we started, the graphs' proxies and event loop."""
        self.stop_server()
        self.graph_hosts.close()


_Run = TypeVar("_Run", bound="VramcapRun")


def attach(environment: Environment, run: _Run) -> _Run:
    """Make ``run`` the Environment's vramcap state (``environment.vramcap``)."""
    setattr(environment, _ATTRIBUTE, run)
    return run


def vramcap_run(environment: Environment) -> VramcapRun:
    """The Environment's vramcap state; a LookupError names the fix when none was attached."""
    run = getattr(environment, _ATTRIBUTE, None)
    if not isinstance(run, VramcapRun):
        raise LookupError("this Locust Environment has no vramcap run: a locustfile calls "
                          "pytest_vramcap.locust.setup.install(events); a library run attaches one "
                          "(pytest_vramcap.locust.state.attach)")
    return run
