"""A user's own graph under Locust: asyncio in a greenlet, the recording proxy on gevent's threads.

Locust runs its users as greenlets; a LangGraph graph is asyncio. Once Locust has
monkey-patched the process, asyncio's default selector is gevent's, so one asyncio
event loop runs as one more greenlet (:class:`GraphLoop`): a user hands it a
graph invocation and waits on a gevent result, and the other users run meanwhile.
The recording proxy (:mod:`pytest_vramcap.load.proxy`) needs no change: its threads are greenlets here.

Each user of a factory or ``build(base_url)`` makes its own copy of the graph on a
channel of the run's proxy (:class:`UserGraph`; one event loop, and one proxy per server,
serve all of a run's users: :class:`GraphHosts`, kept on the run's state on the
Environment), so the requests of its invocations are its own: the channel reports each one
as it ends (Locust's TTFT/TPOT/E2E entries), and the invocation's tokens make its GRAPH
entry. Users run the parallel form (no ``max_concurrency``).

A graph made at module level is one per process, and so are the clients it made as the
module loaded: every user invokes it, and its requests all come through the process's one
endpoint channel (:mod:`pytest_vramcap.load.run.apps`). They are still reported one by one
as they end (TTFT/TPOT/E2E), but no longer per user: an invocation cannot tell its requests
from another user's, so its GRAPH entry has its wall time and its own exception only (no
tokens, and a failed request does not fail it). Once Locust has stopped one of its users,
failed requests of such a graph are not counted (they may be the stopped user's, cut by us).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Coroutine
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import AsyncResult

from ..errors import GraphError
from ..load.measure.record import RequestRecord
from ..load.proxy.channels import Channel, RecordingProxy
from ..load.run.apps import app_for, endpoint
from ..load.run.graphs import graph_config, requests_left_behind
from ..load.run.rounds import runner_request_fields
from ..load.scenario.schema import Scenario

__all__ = ["GraphHosts", "GraphLoop", "UserGraph"]


class GraphLoop:
    """One asyncio event loop running in a greenlet; :meth:`run` waits for a coroutine the gevent way.

    One per process: asyncio keeps its running loop per OS thread, and every greenlet is on the same thread, so
    a second loop's ``run_forever`` would fail ("another loop is running")."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._greenlet = gevent.spawn(self._loop.run_forever)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """The coroutine's result (or exception); a user stopped meanwhile cancels it."""
        if self._greenlet.dead:
            coroutine.close()
            raise RuntimeError(f"the graphs' event loop has stopped: {self._greenlet.exception!r}")
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
        """Cancel what still runs (a graph's requests close their connections), then stop and close the loop."""
        if self._greenlet.dead:
            self._loop.close()
            return
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain()))
        self._greenlet.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    async def _drain(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._loop.stop()


class GraphHosts:
    """What the graph users of one run share: the event loop, a proxy per server they load, and the process's
    endpoint while users of a module-level graph run; :meth:`close` at the run's end stops them (a process runs one
    Locust run at a time: the loop is one per OS thread)."""

    def __init__(self) -> None:
        self.loop: GraphLoop | None = None
        self.proxies: dict[tuple[str, str | None], RecordingProxy] = {}
        self._sharing: list[UserGraph] = []
        """The users of a module-level graph, in the order they started: the endpoint's requests are reported
        through the first one still running."""
        self._shared: Channel | None = None
        self._a_sharer_stopped = False

    def proxy(self, host: str, model: str | None) -> RecordingProxy:
        if (host, model) not in self.proxies:
            self.proxies[host, model] = RecordingProxy(host, model=model,
                                                       request_defaults=runner_request_fields(False)).start()
        return self.proxies[host, model]

    def share(self, user: UserGraph, host: str, model: str | None) -> Channel:
        """The endpoint's channel, pointed at ``host``, for a user of a module-level graph."""
        if self._shared is None:
            self._shared = endpoint().attach(host, model=model)
            self._shared.reset()
            self._shared.on_start, self._shared.on_end = self._started, self._ended
            self._shared.keep_records = False  # each request is reported as it ends; hours of them must not pile up
        self._sharing.append(user)
        return self._shared

    def unshare(self, user: UserGraph) -> None:
        self._a_sharer_stopped = True
        self._sharing = [other for other in self._sharing if other is not user]

    def _reporter(self) -> UserGraph | None:
        return next((user for user in self._sharing if not user.stopped), None)

    def _started(self, record: RequestRecord) -> None:
        user = self._reporter()
        if user is not None:
            user.on_start(record)

    def _ended(self, record: RequestRecord) -> None:
        user = self._reporter()
        if user is not None and (record.ok or not (self._a_sharer_stopped or any(u.stopped for u in self._sharing))):
            user.on_end(record)
        elif user is not None:
            user.forget(record)  # a failure we cannot tell from a stopped user's cut request: not in flight any more

    def new_test(self) -> None:
        """A new test starts (the web UI's Start again): the users stopped before it no longer hide failures."""
        self._a_sharer_stopped = False

    def event_loop(self) -> GraphLoop:
        if self.loop is None:
            self.loop = GraphLoop()
        return self.loop

    def close(self) -> None:
        while self.proxies:
            self.proxies.popitem()[1].stop()
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.on_start = shared.on_end = None
            shared.keep_records = True
            endpoint().detach()
        self._sharing, self._a_sharer_stopped = [], False
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.close()


class UserGraph:
    """One Locust user's graph: its own copy, made on a proxy channel of its own, or the module's one graph on the
    process's endpoint (:attr:`shared`)."""

    def __init__(self, scenario: Scenario, host: str, model: str | None, *, hosts: GraphHosts,
                 on_start: Callable[[RequestRecord], None], on_end: Callable[[RequestRecord], None],
                 on_forget: Callable[[RequestRecord], None] | None = None) -> None:
        assert scenario.graph is not None
        self.scenario = scenario
        self.stopped = False
        """Locust stopped this user: the requests its graph still ends are no answer of the server's."""
        self.on_start, self.on_end = on_start, on_end
        self._on_forget = on_forget
        """A request that ended unreported (a shared channel's failure after a user stopped): no longer in flight."""
        self._hosts = hosts
        self._loop = hosts.event_loop()
        self._proxy: RecordingProxy | None = None
        app = app_for(scenario.graph)
        self.shared = app.shared
        if app.shared:
            self.channel = hosts.share(self, host, model)
        else:
            self._proxy = hosts.proxy(host, model)
            self.channel = self._proxy.channel(on_start=on_start, on_end=on_end)
        try:
            self.graph = app.graph(self.channel.base_url, graph_config(scenario, "parallel"))
        except GraphError:
            self.close()
            raise

    def invoke(self) -> tuple[list[RequestRecord], BaseException | None]:
        """One invocation: the requests it made (each already reported as it ended; none for a shared graph,
        whose requests are not told apart) and what it raised, if any."""
        if not self.shared:
            self.channel.reset()
        error: BaseException | None = None
        try:
            self._loop.run(self.graph.ainvoke(copy.deepcopy(self.scenario.input),
                                              graph_config(self.scenario, "parallel")))
        except GreenletExit:  # Locust stops this user: what its graph had in flight is cut, by us, not the server
            self.stopped = True
            raise
        except Exception as exc:  # the user's graph failed: a failed GRAPH entry
            error = exc
        if self.shared:
            return [], error
        if (left_behind := requests_left_behind(self.channel)) is not None:  # waits as a greenlet: the loop runs on
            error = error or RuntimeError(left_behind)
        return self.channel.reset(), error

    def forget(self, record: RequestRecord) -> None:
        if self._on_forget is not None:
            self._on_forget(record)

    def close(self) -> None:
        """This user stopped: its channel is forgotten (a shared one is left to the others)."""
        self.stopped = True
        if self._proxy is not None:
            self._proxy.release(self.channel)
        else:
            self._hosts.unshare(self)
