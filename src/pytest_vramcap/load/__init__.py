"""Stage 4, the load: scenarios, the streaming client, the sequential / parallel runner, metrics.

    scenarios.py  the scenario schema (LangGraph-style super-steps, or a user's graph, from YAML)
    client.py     a streaming OpenAI-compatible chat client; one RequestRecord per request
    runs.py       what a run is: rounds of a sequential and a parallel pass, the speedup
    fanout.py     a scenario of steps run sequentially, then in parallel (run_both runs any scenario)
    graph_source.py  a user's graph builder imported from graph: FILE.py:build
    graph_run.py  a user's graph invoked sequentially (max_concurrency=1), then in parallel
    proxy.py      the recording pass-through a graph's client talks to: a RequestRecord per request
    proxy_http.py its HTTP server and engine connections; assemble.py rebuilds unstreamed answers
    metrics.py    TTFT, TPOT, E2E, tokens/s and percentiles, by fixed formulas
    stream.py     one chat stream read without I/O (shared by the asyncio client and the Locust users)
    failures.py   why a request failed, as one countable kind
    results.py    what a load run measured (LoadResult), free of Locust

Locust (imported only by these, never by the plugin: Locust monkey-patches at import):
    locust_users.py  agent-graph users on geventhttpclient, reporting TTFT/TPOT/E2E/GRAPH entries
    locust_setup.py  a locustfile's options, the server it plans and starts, its end
    locust_run.py    a headless run through Locust's library API (vramcap load)
"""

from __future__ import annotations

from .client import ChatClient, ChatRequest, RequestRecord
from .fanout import run_both, run_scenario
from .metrics import Distribution, Summary, parallel_speedup, percentile, summarize
from .runs import ModeResult, ScenarioRun
from .scenarios import SLO, Agent, Expectations, Scenario, Step, load_scenario, render_prompt

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
