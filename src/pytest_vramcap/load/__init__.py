"""Stage 5, the load: what a request measured, what a scenario is, how it is run, the recording proxy.

    measure/    the request record and its errors, the stream reader, the chat client, failure kinds, metrics
    scenario/   the scenario schema (YAML steps, or a user's graph) and the graph source
    run/        rounds of a sequential and a parallel pass; the YAML steps runner and the graph runner
    proxy/      the recording pass-through a user's graph talks to (HTTP/1.1 on blocking sockets)
    capacity.py the capacity search without Locust: one step judged, the knee, the table
    results.py  what a load run measured (LoadResult), free of Locust: it crosses processes as JSON

Locust itself lives in :mod:`pytest_vramcap.locust`, above this stage: the plugin never imports it.
"""

from __future__ import annotations

from .measure.client import ChatClient, ChatRequest, RequestRecord
from .measure.metrics import Distribution, Summary, parallel_speedup, percentile, summarize
from .run.rounds import ModeResult, ScenarioRun
from .run.steps import run_both, run_scenario
from .scenario.schema import SLO, Agent, Expectations, Scenario, Step, load_scenario, render_prompt

__all__ = [
    "SLO",
    "Agent",
    "ChatClient",
    "ChatRequest",
    "Distribution",
    "Expectations",
    "ModeResult",
    "RequestRecord",
    "Scenario",
    "ScenarioRun",
    "Step",
    "Summary",
    "load_scenario",
    "parallel_speedup",
    "percentile",
    "render_prompt",
    "run_both",
    "run_scenario",
    "summarize",
]
