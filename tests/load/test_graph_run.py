"""A real LangGraph graph (Send fan-out, langchain-openai's ChatOpenAI) run on a real llama-server: made by
build(base_url), by a factory named in a langgraph.json, or at module level with no builder at all; and a graph
whose requests all went past the recording, which measured nothing."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from pytest_vramcap.errors import GraphError
from pytest_vramcap.load.proxy.channels import RecordingProxy
from pytest_vramcap.load.run.apps import app_for, run_on_process_loop
from pytest_vramcap.load.run.graphs import run_graph_pass
from pytest_vramcap.load.run.rounds import ModeResult
from pytest_vramcap.load.run.steps import run_both
from pytest_vramcap.load.scenario.schema import load_scenario
from tests.helpers import needs_llama_server

pytest.importorskip("langgraph", reason="LangGraph comes with the graph extra (dev installs it)")
pytestmark = needs_llama_server

FAN_OUT_GRAPH = '''
import operator
from typing import Annotated, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class State(TypedDict):
    topic: str
    width: int
    tokens: int
    notes: Annotated[list[str], operator.add]
    verdict: str


def build(base_url):
    def agent(label, max_tokens):
        return ChatOpenAI(base_url=base_url, api_key="unused", model="any", temperature=0, seed=1,
                          max_tokens=max_tokens, extra_body={"ignore_eos": True},
                          default_headers={"X-Vramcap-Label": label})
    worker, judge = agent("work", 96), agent("judge", 4)  # a worker's length comes with the input

    async def work(state):
        if state["topic"] == "explode":
            raise RuntimeError("worker exploded on purpose")
        if state["topic"] == "explode late" and state["i"] == 0:  # once its short answer is in: the others' are not
            await worker.ainvoke("first", max_tokens=1)
            raise RuntimeError("worker 0 exploded while the others were answering")
        answer = await worker.ainvoke(f"angle {state['i']} on {state['topic']}", max_tokens=state["tokens"])
        return {"notes": [answer.content]}

    def judge_notes(state):  # a sync node: LangGraph runs it in a thread
        return {"verdict": judge.invoke("judge " + " ".join(note[:30] for note in state["notes"])).content}

    graph = StateGraph(State)
    graph.add_node("work", work)
    graph.add_node("judge", judge_notes)
    graph.add_conditional_edges(START, lambda s: [Send("work", {"topic": s["topic"], "i": i, "tokens": s["tokens"]})
                                                  for i in range(s["width"])], ["work"])
    graph.add_edge("work", "judge")
    graph.add_edge("judge", END)
    return graph.compile()
'''


@pytest.fixture
def server_url(tiny_server: str) -> str:
    return tiny_server


def scenario_file(tmp_path: Path, topic: str = "GPUs", width: int = 3, tokens: int = 96, name: str = "") -> Path:
    """The fan-out graph's scenario; its workers answer ``tokens`` each (96: long enough to overlap)."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "fan_out_graph.py").write_text(FAN_OUT_GRAPH)
    path = tmp_path / f"fan-out-{topic.replace(' ', '-')}.yaml"
    path.write_text(f"{f'name: {name}' if name else ''}\ngraph: fan_out_graph.py:build\n"
                    f"input: {{topic: {topic}, width: {width}, tokens: {tokens}, notes: []}}\n")
    return path


def test_both_passes_record_every_request_of_the_graph(server_url: str, tmp_path: Path) -> None:
    run = asyncio.run(run_both(server_url, load_scenario(scenario_file(tmp_path)), rounds=2))
    assert run.rounds == 2 and run.sequential.ok and run.parallel.ok and run.speedup is not None
    for result in run.sequential.passes + run.parallel.passes:
        labels = sorted(record.label for record in result.records)
        assert labels == ["judge", "work", "work", "work"]
        assert [r.n_out for r in result.records if r.label == "work"] == [96, 96, 96]
        assert all(r.ttft is not None and r.n_out_source == "usage" for r in result.records)
        judge = next(r for r in result.records if r.label == "judge")
        assert judge.t_send >= max(r.t_last or 0 for r in result.records if r.label == "work")  # after the fan-out
        assert result.started is not None and result.started <= min(r.t_send for r in result.records)
    # counted as requests arrive and end at the proxy; the workers' answers (96 tokens each) are long enough that
    # all three were sent before the first ended (tests/load/test_proxy.py checks the count without a clock)
    assert {p.peak_in_flight for p in run.sequential.passes} == {1}
    assert {p.peak_in_flight for p in run.parallel.passes} == {3} and run.width == 3


# LangGraph's own: the fan-out's other tasks are never started once one raised in the sequential pass.
@pytest.mark.filterwarnings("ignore:coroutine 'arun_with_retry' was never awaited:RuntimeWarning")
def test_a_graph_that_raises_fails_its_pass_with_the_users_traceback(server_url: str, tmp_path: Path) -> None:
    run = asyncio.run(run_both(server_url, load_scenario(scenario_file(tmp_path, topic="explode")), rounds=3))
    assert run.rounds == 1 and run.speedup is None  # no second round repeats the failure
    assert any("the graph raised RuntimeError: worker exploded on purpose" in e for e in run.sequential.errors)
    assert "in work" in run.user_traceback and "fan_out_graph.py" in run.user_traceback
    assert "pytest_vramcap" not in run.user_traceback


def test_a_builder_that_raises_is_a_graph_error(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def build(base_url):\n    raise KeyError('MODEL_NAME')\n")
    (tmp_path / "broken.yaml").write_text("graph: broken.py:build\n")
    with pytest.raises(GraphError, match=r"broken.py:build\('http://127.0.0.1:\d+/c\d+/v1'\) raised KeyError"):
        asyncio.run(run_both(server_url, load_scenario(tmp_path / "broken.yaml")))


def test_requests_a_failed_invocation_left_behind_end_in_its_own_pass(server_url: str, tmp_path: Path) -> None:
    failing, fine = (load_scenario(scenario_file(tmp_path, topic)) for topic in ("explode late", "GPUs"))
    assert failing.graph is not None

    async def two_passes() -> tuple[ModeResult, ModeResult]:
        with RecordingProxy(server_url) as proxy:
            channel = proxy.channel()
            graph = app_for(failing.graph).graph(channel.base_url)
            return (await run_graph_pass(graph, failing, channel, "parallel"),
                    await run_graph_pass(graph, fine, channel, "parallel"))

    failed, next_pass = asyncio.run(two_passes())
    assert any("worker 0 exploded while the others were answering" in error for error in failed.errors)
    # LangGraph cancelled the other workers: their requests were cut, the engine stopped, and they count here
    left_behind = [record for record in failed.records if record.label == "work" and not record.ok]
    assert len(left_behind) == 2 and all("client closed its connection" in (r.error or "") for r in left_behind)
    assert next_pass.ok and sorted(record.label for record in next_pass.records) == ["judge", "work", "work", "work"]


# ------------------------------------------------------------------ the app as written: no build(base_url)

APP_AS_WRITTEN = '''
import operator
from typing import Annotated, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class State(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]
    verdict: str


def agent(label, max_tokens):  # no base_url, no api_key: ChatOpenAI reads OPENAI_BASE_URL, OPENAI_API_KEY
    return ChatOpenAI(model="any", temperature=0, seed=1, max_tokens=max_tokens, extra_body={"ignore_eos": True},
                      default_headers={"X-Vramcap-Label": label})


def compiled(worker, judge):
    async def work(state):
        return {"notes": [(await worker.ainvoke(f"angle {state['i']} on {state['topic']}")).content]}

    async def judge_notes(state):
        return {"verdict": (await judge.ainvoke("judge " + " ".join(n[:30] for n in state["notes"]))).content}

    graph = StateGraph(State)
    graph.add_node("work", work)
    graph.add_node("judge", judge_notes)
    graph.add_conditional_edges(START, lambda s: [Send("work", {"topic": s["topic"], "i": i}) for i in range(3)],
                                ["work"])
    graph.add_edge("work", "judge")
    graph.add_edge("judge", END)
    return graph.compile()


MADE = []


def make_graph(config):  # LangGraph's factory: its clients are made when it is called
    MADE.append(config)
    return compiled(agent("work", 64), agent("judge", 4))


graph = compiled(agent("work", 64), agent("judge", 4)) if __name__ != "factory_only" else None
'''


def write_app(directory: Path, attribute: str) -> Path:
    """The app as LangGraph's tooling has it: the graph file and a langgraph.json naming ``attribute``."""
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "src" / "agent.py").write_text(APP_AS_WRITTEN)
    (directory / "langgraph.json").write_text(json.dumps({"dependencies": ["."],
                                                          "graphs": {"agent": f"./src/agent.py:{attribute}"}}))
    return directory / "langgraph.json"


def assert_every_request_recorded(result: ModeResult) -> None:
    assert result.ok, result.errors
    assert sorted(record.label for record in result.records) == ["judge", "work", "work", "work"]
    assert all(record.ttft is not None and record.n_out == 64 for record in result.records if record.label == "work")
    assert result.unrecorded == {}


def test_a_module_level_chatopenai_app_runs_unchanged_through_the_proxy(server_url: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "app.yaml").write_text("graph: app/src/agent.py:graph\ninput: {topic: GPUs, notes: []}\n")
    write_app(tmp_path / "app", "graph")
    scenario = load_scenario(tmp_path / "app.yaml")
    assert app_for(scenario.graph).shared  # type: ignore[arg-type]
    # as the plugin runs them: on the process's one event loop, which the module's async clients keep connections of
    first = run_on_process_loop(run_both(server_url, scenario, rounds=2))
    # a second run in the same process: the module (and its clients) is not imported again, the endpoint is reused
    second = run_on_process_loop(run_both(server_url, scenario))
    for result in first.sequential.passes + first.parallel.passes + second.sequential.passes + second.parallel.passes:
        assert_every_request_recorded(result)
    assert first.width == second.width == 3
    assert "OPENAI_BASE_URL" not in os.environ and "OPENAI_API_KEY" not in os.environ  # put back after the import


def test_a_factory_named_in_langgraph_json_gets_a_config_and_a_channel(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("graph: app/langgraph.json:agent\ninput: {topic: GPUs, notes: []}\n"
                                       "config: {recursion_limit: 10, configurable: {user: u1}}\n")
    write_app(tmp_path / "app", "make_graph")
    scenario = load_scenario(tmp_path / "app.yaml")
    assert scenario.graph is not None and scenario.graph.via == "langgraph.json:agent"
    run = run_on_process_loop(run_both(server_url, scenario))
    for result in run.sequential.passes + run.parallel.passes:
        assert_every_request_recorded(result)
    assert run.width == 3
    made = app_for(scenario.graph).target.__globals__["MADE"]
    assert made == [{"recursion_limit": 10, "configurable": {"user": "u1"}}]  # once per run


UNMEASURED = '''
import os

import httpx
from langgraph.graph import END, START, StateGraph
from openai import AsyncOpenAI
from typing import TypedDict

CLIENT = AsyncOpenAI()  # module level: OPENAI_BASE_URL and the placeholder key
OLLAMA = os.environ["OLLAMA_HOST"]


class State(TypedDict):
    topic: str


async def look(state):
    await CLIENT.models.list()  # passed through, not a completion
    async with httpx.AsyncClient() as http:
        await http.post(f"{OLLAMA}/api/chat", json={"model": "any", "messages": []})  # only loads: not recorded
    return {}


async def idle(state):
    return {}


def build_graph(node):
    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    return graph.compile()


graph = build_graph(look)
silent = build_graph(idle)
'''


@pytest.mark.parametrize("attribute, message, unrecorded", [
    ("graph", "nothing was measured: the graph made no chat or text completion (the requests vramcap records); it "
              "called GET /v1/models x1, POST /api/chat x1", {"GET /v1/models": 1, "POST /api/chat": 1}),
    ("silent", "nothing was measured: the graph made no request through vramcap's endpoint", {}),
])
def test_a_pass_that_measured_nothing_fails_and_names_what_the_graph_called(
        server_url: str, tmp_path: Path, attribute: str, message: str, unrecorded: dict[str, int]) -> None:
    (tmp_path / "unmeasured.py").write_text(UNMEASURED)
    (tmp_path / "s.yaml").write_text(f"graph: unmeasured.py:{attribute}\ninput: {{topic: GPUs}}\n")
    run = run_on_process_loop(run_both(server_url, load_scenario(tmp_path / "s.yaml"), rounds=2))
    assert run.rounds == 1 and run.speedup is None  # a failed round: the second is not run
    for result in run.sequential.passes + run.parallel.passes:
        assert result.records == [] and result.unrecorded == unrecorded and result.peak_in_flight == 0
        assert [error for error in result.errors if error.startswith(message)], result.errors
    assert run.width == 0 and run.parallel.unrecorded == unrecorded
