"""Run a user's graph against a server, sequentially and in parallel.

The graph is had once per run (:mod:`.apps`): a factory or ``build(base_url)`` is called
with a channel of the recording proxy (:mod:`..proxy`), a module-level graph talks to the
process's endpoint, so every request it makes is recorded whatever client it uses. A
pass in which it made no recorded request fails, naming what it did call: a graph
whose clients went around the proxy, or only to endpoints it does not record as
completions (``/v1/responses``, embeddings alone), measured nothing. With several models,
each request goes to the model it names (:class:`~..proxy.router.ModelRoute`).
The sequential pass invokes it with ``max_concurrency=1`` (LangGraph runs one task
at a time, so a fan-out's agents go one by one), the parallel pass without a
limit; both with the scenario's ``input`` and ``config``. The wall-time ratio is
the parallel speedup, as for a scenario of steps, provided the graph fixes its
outputs (``max_tokens``, ``temperature=0``, a seed, and ``ignore_eos`` for
llama-server: see scenarios/research_graph.py).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ...types import RunMode
from ..measure.client import ChatClient
from ..proxy.channels import Channel, RecordingProxy
from ..proxy.router import ModelRoute
from ..scenario.graph_source import App, Builder, Graph, app_of, user_traceback
from ..scenario.schema import GraphRef, Scenario
from .apps import app_for, endpoint
from .rounds import ModeResult, ScenarioRun, pass_marker, run_rounds, runner_request_fields, warm_up

__all__ = ["LEFT_BEHIND_TIMEOUT_S", "graph_config", "nothing_measured", "requests_left_behind", "run_graph_both",
           "run_graph_pass"]


def graph_config(scenario: Scenario, mode: RunMode) -> dict[str, Any]:
    """The config of one invocation: the scenario's, with the runner's ``max_concurrency``."""
    return {**copy.deepcopy(scenario.config), **({"max_concurrency": 1} if mode == "sequential" else {})}


LEFT_BEHIND_TIMEOUT_S = 10.0
"""How long requests that a failed invocation left in flight may take to end (the proxy ends each once it sees
its client gone) before the invocation reports them; they must not be counted in the next one."""


def requests_left_behind(channel: Channel) -> str | None:
    """Wait (blocking) for the requests an invocation left in flight to end; the error line if some still are after
    LEFT_BEHIND_TIMEOUT_S. A pass in pytest and a Locust user's invocation both end with this."""
    if channel.wait_idle(LEFT_BEHIND_TIMEOUT_S):
        return None
    return f"{channel.in_flight} request(s) still in flight {LEFT_BEHIND_TIMEOUT_S:.0f} s after the graph returned"


async def run_graph_pass(graph: Graph, scenario: Scenario, channel: Channel, mode: RunMode,
                         prompt_cache: bool = False) -> ModeResult:
    """One invocation of ``graph`` in ``mode``; its requests are those ``channel`` recorded meanwhile. With the
    prompt cache on, the pass's requests lead with a marker of its own (:func:`~.rounds.pass_marker`)."""
    channel.reset()
    channel.pass_marker = pass_marker() if prompt_cache else ""
    errors: list[str] = []
    traceback = ""
    start = time.monotonic()
    try:
        await graph.ainvoke(copy.deepcopy(scenario.input), graph_config(scenario, mode))
    except Exception as exc:  # the user's graph failed: a failed pass, with their traceback
        errors.append(f"the graph raised {type(exc).__name__}: {str(exc)[:300]}")
        traceback = user_traceback(exc, (scenario.graph.file,) if scenario.graph is not None else ())
    wall = time.monotonic() - start
    peak = channel.peak_in_flight
    # in a thread: the loop must go on running what the graph left (its cancelled requests close their connections)
    if channel.in_flight and (left_behind := await asyncio.to_thread(requests_left_behind, channel)):
        errors.append(left_behind)
    unrecorded = dict(channel.unrecorded)
    records = channel.reset()
    channel.pass_marker = ""
    errors = [f"{record.label}: {record.error}" for record in records if not record.ok] + errors
    chats = [record for record in records if record.endpoint != "embeddings"]
    if not chats:
        errors.append(nothing_measured(unrecorded))
    return ModeResult(mode, wall, {}, chats, errors, started=start, peak_in_flight=peak, user_traceback=traceback,
                      unrecorded=unrecorded, embeddings=[each for each in records if each.endpoint == "embeddings"])


def nothing_measured(unrecorded: Mapping[str, int]) -> str:
    """The failure of a pass that made no recorded request, with the endpoints it did call through the proxy."""
    if not unrecorded:
        return ("nothing was measured: the graph made no request through vramcap's endpoint (do its clients take "
                "the base URL they are given, or read OPENAI_BASE_URL / OLLAMA_HOST when they are made? A client "
                "made at import and used by a factory or build reaches the module-level endpoint instead: make it "
                "inside the factory)")
    calls = ", ".join(f"{endpoint} x{count}" for endpoint, count in sorted(unrecorded.items()))
    return (f"nothing was measured: the graph made no chat or text completion (the requests vramcap records); "
            f"it called {calls}")


@asynccontextmanager
async def _graph_channel(app: App, url: str, model: str | None, read_timeout_s: float,
                         prompt_cache: bool, routes: Sequence[ModelRoute]) -> AsyncIterator[Channel]:
    """Where ``app``'s graph sends its requests for one run: the endpoint (a module-level graph, made at import)
    pointed at ``url`` (each model's server, with ``routes``), else a proxy of the run's own."""
    fields = runner_request_fields(prompt_cache)
    if app.shared:
        channel = endpoint().attach(url, model=model, read_timeout_s=read_timeout_s, request_defaults=fields,
                                    routes=routes)
        try:
            yield channel
        finally:
            endpoint().detach()
        return
    with RecordingProxy(url, model=model, request_defaults=fields, read_timeout_s=read_timeout_s,
                        routes=routes) as proxy:
        yield proxy.channel()


async def run_graph_both(url: str, scenario: Scenario, *, build: Builder | None = None, model: str | None = None,
                         warmup: bool = True, read_timeout_s: float = 300.0, rounds: int = 1,
                         prompt_cache: bool = False, routes: Sequence[ModelRoute] = (),
                         settled: Callable[[ScenarioRun], bool] | None = None) -> ScenarioRun:
    """``rounds`` of a sequential and a parallel invocation of the scenario's graph (or ``build``'s: a callable
    taken by the same rule as one that ``graph:`` names)."""
    if build is not None:
        app = app_of(build, scenario.graph if scenario.graph is not None else GraphRef.of(build))
    elif scenario.graph is not None:
        app = app_for(scenario.graph)
    else:
        raise ValueError(f"scenario {scenario.name!r} names no graph and no build was given")
    async with _graph_channel(app, url, model, read_timeout_s, prompt_cache, routes) as channel:
        graph = app.graph(channel.base_url, graph_config(scenario, "parallel"))
        if warmup:
            async with ChatClient(url, model=model, read_timeout_s=read_timeout_s) as client:
                await warm_up(client)
        return await run_rounds(scenario, lambda mode: run_graph_pass(graph, scenario, channel, mode, prompt_cache),
                                rounds, prompt_cache, settled)
