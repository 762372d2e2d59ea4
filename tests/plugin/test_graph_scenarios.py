"""Graph scenarios through the plugin (pytester, a real llama-server): collected from YAML, run by
``vramcap_fanout.run_graph`` in a user's test, and the errors a user's graph can cause.

No outcome here rests on a clock: the shipped example's speedup minimum is read from the
report but not asserted, and the widths and the slot shortage are counts of requests in
flight at the proxy (the test graph's answers, 128 tokens, are long enough that a fan-out's
requests were all sent before the first one ended).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import needs_llama_server
from tests.plugin.project import report, server_logs, write_scenarios

pytest_plugins = ["pytester"]
pytest.importorskip("langgraph", reason="LangGraph comes with the graph extra (dev installs it)")
pytestmark = needs_llama_server

SHIPPED = Path(__file__).parents[2] / "scenarios"

SMALL_GRAPH = '''
from typing import TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph
from langgraph.types import Send


class State(TypedDict):
    width: int


def build(base_url):
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model="any", max_tokens=128, temperature=0,
                     extra_body={"ignore_eos": True}, default_headers={"X-Vramcap-Label": "agent"})

    async def agent(state):
        await llm.ainvoke(f"angle {state['i']}")
        return {}

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_conditional_edges(START, lambda s: [Send("agent", {"i": i}) for i in range(s["width"])], ["agent"])
    return graph.compile()


def build_badly(base_url):
    return load_settings(base_url)


def load_settings(base_url):
    raise RuntimeError(f"no settings for {base_url}")
'''


def test_the_shipped_graph_scenario_runs_on_the_embedded_server(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.mkdir("scenarios")
    for name in ("research-graph.yaml", "research_graph.py"):
        shutil.copy(SHIPPED / name, pytester.path / "scenarios" / name)
    result = run("--vram-profile=16gb", "scenarios")
    result.stdout.fnmatch_lines(["*research-graph*"])
    scenario = report(pytester)["scenarios"][0]
    assert scenario["name"] == "research-graph" and scenario["speedup"] > 0
    verdicts = {v["name"]: v for v in scenario["verdicts"]}
    assert verdicts["oom"]["outcome"] == verdicts["slots"]["outcome"] == "pass"
    assert verdicts["slots"]["summary"] == "4 slot(s) for at most 4 requests in flight at once (the graph's fan-out)"
    assert "minimum 1.40x" in verdicts["parallel_speedup"]["summary"]  # the YAML's own minimum, judged
    for mode in ("sequential", "parallel"):
        requests = scenario[mode]["requests"]
        assert sorted((r["label"], r["n_out"]) for r in requests) == [("research", 96)] * 4 + [("synthesis", 16)]
        assert all(r["ttft_s"] is not None and r["error"] is None for r in requests)


USER_TESTS = '''
import pytest
from graphs.small import build


@pytest.mark.vramcap(min_speedup=0.001)
def test_callable(vramcap_fanout):
    run = vramcap_fanout.run_graph(build, {"width": 2}, name="mine")
    assert run.scenario.graph.attribute == "build" and run.scenario.graph.file.name == "small.py"
    assert run.width == 2 and len(run.parallel.records) == 2
    vramcap_fanout.check(run)


def test_path(vramcap_fanout):
    run = vramcap_fanout.run_graph("graphs/small.py:build", {"width": 3})
    assert run.scenario.name == "small" and run.width == 3
    vramcap_fanout.check(run)


def test_build_raises(vramcap_fanout):
    vramcap_fanout.run_graph("graphs/small.py:build_badly", {"width": 1})


def test_no_such_file(vramcap_fanout):
    vramcap_fanout.run_graph("graphs/nothere.py:build")
'''


def test_graphs_in_a_users_tests_and_their_errors(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.mkdir("graphs")
    pytester.path.joinpath("graphs/small.py").write_text(SMALL_GRAPH)
    pytester.path.joinpath("test_mine.py").write_text(USER_TESTS)
    write_scenarios(pytester, raises="graph: ../graphs/small.py:build_badly\n")
    result = run("--vram-profile=16gb", "-p", "no:randomly", "test_mine.py", "scenarios")
    result.assert_outcomes(passed=2, failed=3)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["run_graph(graphs/nothere.py:build): invalid scenario: graph.file: graph file "
                                 "'*nothere.py' does not exist"])
    assert "During handling" not in output
    # the user's frames, once per failing test, then one line; none of ours. Counted in the failure reports:
    # under CI (the CI variable set) pytest repeats every failure's whole message in its short summary.
    failures = output.split("short test summary info")[0]
    assert failures.count("in load_settings") == 2 and failures.count('raise RuntimeError(f"no settings for') == 2
    result.stdout.fnmatch_lines(["*small.py:build_badly('http://127.0.0.1:*/c*/v1') raised RuntimeError: no "
                                 "settings for http://127.0.0.1:*"])
    assert "graph_source.py" not in output
    names = {s["name"]: s for s in report(pytester)["scenarios"]}
    assert set(names) == {"mine", "small", "raises"} and names["mine"]["passed"] is True
    # a build that raises when it is called: in the report as failed, by the verdict that says why
    assert names["raises"]["passed"] is False and [v["name"] for v in names["raises"]["verdicts"]] == ["graph"]


def test_a_graph_that_cannot_be_had_is_a_collection_error_before_any_server(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.path.joinpath("g.py").write_text("import json\n\nCONFIG = json.loads('{not json')\n")
    pytester.path.joinpath("fine.py").write_text("def build(base_url):\n    return None\n\n"
                                                 "def thing(a, b):\n    return None\n")
    pytester.path.joinpath("langgraph.json").write_text('{"graphs": {"agent": "./fine.py:build"}}')
    write_scenarios(pytester, broken="graph: ../g.py:build\n", missing_attribute="graph: ../fine.py:biuld\n",
                    two_parameters="graph: ../fine.py:thing\n", not_named="graph: ../langgraph.json:other\n")
    result = run("--vram-profile=16gb", "scenarios")
    result.assert_outcomes(errors=4)  # as pytest has a test module that cannot be imported
    result.stdout.fnmatch_lines(["*g.py*line 3, in <module>*", "*g.py cannot be imported: JSONDecodeError*"])
    output = result.stdout.str()
    assert "fine.py has no attribute 'biuld' (it defines: build, thing)" in output
    assert "fine.py:thing: thing(a, b) needs a, b: vramcap calls it with one argument at most" in output
    assert "langgraph.json has no graph 'other' (it names: agent)" in output
    assert "graph_source.py" not in output and "importlib" not in output
    assert server_logs(pytester) == []


MODULE_LEVEL_APP = '''
from typing import TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph
from langgraph.types import Send
from openai import AsyncOpenAI

llm = ChatOpenAI(model="any", max_tokens=128, temperature=0, extra_body={"ignore_eos": True})  # no base_url, no key
embedder = AsyncOpenAI()


class State(TypedDict):
    width: int


async def agent(state):
    await llm.ainvoke(f"angle {state['i']}")
    return {}


async def look(state):
    await embedder.models.list()
    return {}


def compiled(node):
    graph = StateGraph(State)
    graph.add_node("agent", node)
    graph.add_conditional_edges(START, lambda s: [Send("agent", {"i": i}) for i in range(s["width"])], ["agent"])
    return graph.compile()


graph = compiled(agent)
unmeasured = compiled(look)
'''


def test_a_module_level_app_runs_as_written_and_one_that_measures_nothing_fails(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.path.joinpath("app.py").write_text(MODULE_LEVEL_APP)
    write_scenarios(pytester, app="graph: ../app.py:graph\ninput: {width: 2}\n",
                    app_again="graph: ../app.py:graph\ninput: {width: 3}\n",  # the same module, clients, loop
                    unmeasured="graph: ../app.py:unmeasured\ninput: {width: 2}\n")
    result = run("--vram-profile=16gb", "-p", "no:randomly", "scenarios")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*nothing was measured: the graph made no chat or text completion (the requests "
                                 "vramcap records); it called GET /v1/models x2*"])
    names = {s["name"]: s for s in report(pytester)["scenarios"]}
    for name, width in (("app", 2), ("app_again", 3)):
        assert len(names[name]["parallel"]["requests"]) == width and names[name]["parallel"]["unrecorded"] == {}
    verdicts = {v["name"]: v for v in names["unmeasured"]["verdicts"]}
    assert verdicts["slots"]["outcome"] == "n/a" and verdicts["parallel_speedup"]["outcome"] == "fail"
    assert names["unmeasured"]["parallel"]["unrecorded"] == {"GET /v1/models": 2}
    assert names["unmeasured"]["parallel"]["requests"] == []


def test_a_graph_wider_than_the_slots_fails_without_a_clock(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.mkdir("graphs")
    pytester.path.joinpath("graphs/small.py").write_text(SMALL_GRAPH)
    write_scenarios(pytester, wide="graph: ../graphs/small.py:build\ninput: {width: 3}\n")
    result = run("--vram-profile=16gb", "--vramcap-agents=1", "scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]FAIL[]] slots: the server has 1 slot(s) for 3 requests in flight at once*",
                                 "*parallel pass: up to 3 requests in flight on 1 slot(s)*"])
