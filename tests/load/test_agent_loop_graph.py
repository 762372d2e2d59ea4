"""A held-out LangGraph app of the issue's shape, run as written: three agents that each loop four turns over their
own growing conversation under one ~900-token system prompt they share (langchain-openai's ChatOpenAI, a
module-level compiled graph). At 4096 tokens a slot it passes, with the prompt cache serving the later turns; at
512 the engine refuses a turn and the ``context`` verdict names the agent and the turn."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.load.run.apps import run_on_process_loop
from pytest_vramcap.load.run.steps import run_both
from pytest_vramcap.load.scenario.schema import load_scenario
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.report.conversation import context_verdict, prompt_cache_verdict
from tests.helpers import needs_llama_server

pytest.importorskip("langgraph", reason="LangGraph comes with the graph extra (dev installs it)")
pytestmark = needs_llama_server

LOOP_GRAPH = '''
import operator
from typing import Annotated, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

RULES = " ".join(["Follow the team's rules: read the task, call a tool, read its result, and say what you found."]
                 * 45)  # about 900 tokens, shared by every agent


class State(TypedDict):
    task: str
    notes: Annotated[list[str], operator.add]


def agent(label):
    model = ChatOpenAI(model="any", api_key="unused", temperature=0, seed=1, max_tokens=8,
                       extra_body={"ignore_eos": True}, default_headers={"X-Vramcap-Label": label})

    async def loop(state):
        history = [("system", RULES), ("user", f"{label}: {state['task']}")]
        for turn in range(4):
            answer = await model.ainvoke(history)
            history += [("assistant", answer.content), ("user", f"tool result {turn}: " + "ok " * 60)]
        return {"notes": [answer.content]}

    return loop


builder = StateGraph(State)
for name in ("coder", "writer", "critic"):
    builder.add_node(name, agent(name))
    builder.add_edge(START, name)
    builder.add_edge(name, END)
graph = builder.compile()
'''


@pytest.fixture()
def scenario_path(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "loop_app.py").write_text(LOOP_GRAPH)
    path = tmp_path / "loop-app.yaml"
    path.write_text("graph: loop_app.py:graph\ninput: {task: fix the flaky test, notes: []}\n")
    yield path
    sys.modules.pop("loop_app", None)


@pytest.mark.parametrize("slot", [4096, 512])
def test_the_held_out_loop_app_fits_4096_and_overflows_512(slot: int, scenario_path: Path, tiny_model: Path,
                                                           tmp_path: Path) -> None:
    scenario = load_scenario(scenario_path)
    one_thread = {**os.environ, "LLAMA_ARG_THREADS": "1"}  # two servers under -n 2 must not spin on 2 cores
    with LlamaServer(ServerConfig(parallel=3, ctx_per_agent=slot), tiny_model,
                     EngineOptions(log_dir=tmp_path, startup_timeout_s=120, env=one_thread)) as server:
        run = run_on_process_loop(run_both(server.url, scenario, rounds=1, prompt_cache=True))
    verdict = context_verdict(slot, run)
    records = [record for mode in (run.sequential, run.parallel) for p in mode.passes for record in p.records]
    if slot == 4096:
        assert run.sequential.ok and run.parallel.ok, run.sequential.errors + run.parallel.errors
        assert sorted({(r.label, r.turn) for r in records}) == [(label, turn) for label in ("coder", "critic", "writer")
                                                                for turn in (1, 2, 3, 4)]
        assert verdict.outcome == "pass", verdict.describe()
        later = [r for r in records if r.turn and r.turn > 1]
        assert later and all(r.cached_tokens and r.cached_tokens > 900 for r in later)
        assert prompt_cache_verdict(run, scenario.expect.prompt_cache_min).outcome == "pass"
    else:
        assert verdict.outcome == "fail", verdict.describe()
        assert verdict.summary.startswith("agent ") and "overflowed its 512-token slot at turn" in verdict.summary
