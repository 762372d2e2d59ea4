"""Stage 4, the load: scenarios, the streaming client, the sequential / parallel runner, metrics.

    scenarios.py  the scenario schema (LangGraph-style super-steps, from YAML)
    client.py     a streaming OpenAI-compatible chat client; one RequestRecord per request
    fanout.py     a scenario run sequentially, then in parallel
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
from .fanout import ModeResult, ScenarioRun, run_both, run_scenario
from .metrics import Distribution, Summary, parallel_speedup, percentile, summarize
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
