"""A user's app as the runners have it: imported with the process's endpoint in its environment.

A module-level client (``llm = ChatOpenAI(...)`` at the top of the user's file) reads
``OPENAI_BASE_URL``, ``OLLAMA_HOST``... once, when the module is imported, and a
module is imported once per process. So the address it reads must outlive any one run:
the process's :class:`Endpoint`, a recording proxy with one channel, started (with no
engine behind it) before the first graph file is imported, and pointed at each run's
server while that run goes on. A graph made at module level (:attr:`App.shared
<pytest_vramcap.load.scenario.graph_source.App.shared>`) is invoked through that one
channel, by every run and every Locust user of the process; a factory or
``build(base_url)`` is called per run (per user) with a channel of its own, the
variables pointing at that channel while it runs.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ..proxy.channels import Channel, RecordingProxy
from ..proxy.router import ModelRoute
from ..scenario.graph_source import App, endpoint_environ, load_app
from ..scenario.schema import GraphRef, Scenario
from .rounds import runner_request_fields

__all__ = ["Endpoint", "app_for", "check_graph", "endpoint", "run_on_process_loop"]

T = TypeVar("T")


class Endpoint:
    """The process's address for clients a module makes as it loads: a proxy with one channel, whose engine is
    whichever run's server :meth:`attach` named last (none between runs: requests then get a 502)."""

    def __init__(self) -> None:
        self._proxy = RecordingProxy(None, request_defaults=runner_request_fields(False),
                                     name="vramcap-endpoint").start()
        self.channel = self._proxy.channel()
        self._lock = threading.Lock()
        self._attached: tuple[str, str | None] | None = None

    def environ(self) -> dict[str, str]:
        """The SDKs' variables for this endpoint's channel (what a module is imported with)."""
        return endpoint_environ(self.channel.base_url)

    def attach(self, upstream: str, *, model: str | None = None, read_timeout_s: float = 300.0,
               request_defaults: Mapping[str, Any] | None = None, routes: Sequence[ModelRoute] = ()) -> Channel:
        """Forward this endpoint to ``upstream`` (a run's server) until :meth:`detach`; its channel is returned.
        One server at a time: a second run on another server while one is attached is refused."""
        with self._lock:
            if self._attached is not None and self._attached != (upstream, model):
                raise RuntimeError(f"the module-level graphs' endpoint already serves {self._attached[0]}: one "
                                   f"server at a time per process")
            self._attached = (upstream, model)
            self._proxy.retarget(upstream, model=model, read_timeout_s=read_timeout_s,
                                 request_defaults=request_defaults, routes=routes)
        return self.channel

    def detach(self) -> None:
        with self._lock:
            self._attached = None
            self._proxy.retarget(None)

    def stop(self) -> None:
        """Close its port and connections (the process is ending)."""
        self._proxy.stop()


_endpoint: Endpoint | None = None
_endpoint_lock = threading.Lock()


def endpoint() -> Endpoint:
    """The process's endpoint, started on first use."""
    global _endpoint
    with _endpoint_lock:
        if _endpoint is None:
            _endpoint = Endpoint()
            atexit.register(_endpoint.stop)  # its threads are daemons; its sockets are closed all the same
        return _endpoint


def app_for(ref: GraphRef) -> App:
    """What ``ref`` names, its file imported (once per process) with the endpoint's variables set."""
    return load_app(ref, endpoint().environ())


def check_graph(scenario: Scenario) -> None:
    """Import a graph scenario's file and check what it names now, so a graph that cannot be had fails before any
    server starts."""
    if scenario.graph is not None:
        app_for(scenario.graph)


_loop: asyncio.AbstractEventLoop | None = None


def run_on_process_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` on one event loop kept for the whole process. A module-level async client (an
    ``AsyncOpenAI``, ChatOpenAI's pooled httpx client) keeps connections that belong to the loop that opened them,
    and its module is imported once: every run of its graph must be on that loop ("Event loop is closed"
    otherwise). What a run leaves pending is cancelled at its end, as asyncio.run does; the loop stays open."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        atexit.register(_close_loop, _loop)
    loop = _loop
    try:
        return loop.run_until_complete(coroutine)
    finally:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does at its end, once for the process: async generators and the executor shut down."""
    if loop.is_closed() or loop.is_running():
        return
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
