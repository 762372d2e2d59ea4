"""A user's own graph under Locust: asyncio in a greenlet, the recording proxy on gevent's threads.

Locust runs its users as greenlets; a LangGraph graph is asyncio. Once Locust has
monkey-patched the process, asyncio's default selector is gevent's, so one asyncio
event loop runs as one more greenlet (:class:`GraphLoop`): a user hands it a
graph invocation and waits on a gevent result, and the other users run meanwhile.
The recording proxy (:mod:`.proxy`) needs no change: its threads are greenlets here.

Each user builds its own copy of the graph on a channel of the process's proxy
(:class:`UserGraph`), so the requests of its invocations are its own: the channel
reports each one as it ends (Locust's TTFT/TPOT/E2E entries), and the invocation's
tokens make its GRAPH entry. Users run the parallel form (no ``max_concurrency``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Coroutine
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import AsyncResult

from .graph_run import graph_config
from .graph_source import Builder, build_graph, load_builder
from .proxy import RecordingProxy
from .runs import RUNNER_REQUEST_FIELDS
from .scenarios import Scenario
from .stream import RequestRecord

__all__ = ["GraphLoop", "UserGraph", "close_graph_hosts"]


class GraphLoop:
    """One asyncio event loop running in a greenlet; :meth:`run` waits for a coroutine the gevent way."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._greenlet = gevent.spawn(self._loop.run_forever)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """The coroutine's result (or exception); a user stopped meanwhile cancels it."""
        done: AsyncResult[Any] = AsyncResult()
        tasks: list[asyncio.Task[Any]] = []

        def finished(task: asyncio.Task[Any]) -> None:
            error = asyncio.CancelledError() if task.cancelled() else task.exception()
            if error is not None:
                done.set_exception(error)
            else:
                done.set(task.result())

        def start() -> None:
            tasks.append(self._loop.create_task(coroutine))
            tasks[0].add_done_callback(finished)

        self._loop.call_soon_threadsafe(start)
        try:
            return done.get()
        except GreenletExit:  # Locust stops this user: its graph stops with it
            self._loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            raise

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._greenlet.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()


class _GraphHost:
    """What the graph users of one process share: the builder, the event loop, the proxy to the server."""

    def __init__(self, scenario: Scenario, host: str, model: str | None) -> None:
        assert scenario.graph is not None
        self.builder: Builder = load_builder(scenario.graph)
        self.loop = GraphLoop()
        self.proxy = RecordingProxy(host, model=model, request_defaults=RUNNER_REQUEST_FIELDS).start()

    def close(self) -> None:
        self.proxy.stop()
        self.loop.close()


_hosts: dict[tuple[str, str | None, str], _GraphHost] = {}


def close_graph_hosts() -> None:
    """Stop this process's proxies and event loops (a run's end)."""
    while _hosts:
        _hosts.popitem()[1].close()


class UserGraph:
    """One Locust user's copy of the scenario's graph, built on a proxy channel of its own."""

    def __init__(self, scenario: Scenario, host: str, model: str | None, *,
                 on_start: Callable[[RequestRecord], None], on_end: Callable[[RequestRecord], None]) -> None:
        key = (host, model, str(scenario.graph))
        if key not in _hosts:
            _hosts[key] = _GraphHost(scenario, host, model)
        self._host = _hosts[key]
        self.scenario = scenario
        self.channel = self._host.proxy.channel(on_start=on_start, on_end=on_end)
        self.graph = build_graph(self._host.builder, self.channel.base_url, str(scenario.graph))

    def invoke(self) -> tuple[list[RequestRecord], BaseException | None]:
        """One invocation: the requests it made (each already reported as it ended) and what it raised, if any."""
        self.channel.reset()
        error: BaseException | None = None
        try:
            self._host.loop.run(self.graph.ainvoke(copy.deepcopy(self.scenario.input),
                                                   graph_config(self.scenario, "parallel")))
        except Exception as exc:  # the user's graph failed: a failed GRAPH entry
            error = exc
        return self.channel.reset(), error
