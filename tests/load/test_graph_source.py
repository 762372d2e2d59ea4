"""Graph scenarios without a server: the YAML keys and langgraph.json, importing the user's file with the endpoint
in its environment, telling a graph from a factory from build(base_url), calling them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pytest_vramcap.errors import GraphError, ScenarioError
from pytest_vramcap.load.scenario.graph_source import App, app_of, endpoint_environ, load_app
from pytest_vramcap.load.scenario.schema import GraphRef, load_scenario

REPO = Path(__file__).parents[2]
PLACE = GraphRef.model_construct(file=Path("g.py"), attribute="build")
"""Where a builder defined here is said to be, in errors."""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class FakeGraph:
    async def ainvoke(self, input: dict, config: dict) -> dict:
        return input


def test_graph_path_is_relative_to_the_yaml_file(tmp_path: Path) -> None:
    graph_file = write(tmp_path / "graphs", "g.py", "def build(base_url):\n    return base_url\n")
    scenario = load_scenario(write(tmp_path / "scenarios", "g.yaml", "graph: ../graphs/g.py:build\n"
                                                                     "input: {q: why, notes: []}\n"
                                                                     "config: {recursion_limit: 9}\n"))
    assert scenario.graph == GraphRef(file=graph_file.resolve(), attribute="build")
    assert scenario.input == {"q": "why", "notes": []} and scenario.config == {"recursion_limit": 9}
    assert scenario.max_width is None and scenario.name == "g"


def test_the_shipped_graph_scenario_loads() -> None:
    scenario = load_scenario(REPO / "scenarios" / "research-graph.yaml")
    assert scenario.graph is not None and scenario.graph.file == REPO / "scenarios" / "research_graph.py"
    assert scenario.expect.min_speedup is not None


@pytest.mark.parametrize("text, message", [
    ("graph: nope.py:build\n", "graph file .*nope.py' does not exist"),
    ("graph: g.py\n", "is not FILE.py:ATTRIBUTE or langgraph.json:NAME"),
    ("graph: g.txt:build\n", "is not a .py file"),
    ("graph: 'g.py:not an attribute'\n", "graph.attribute: String should match pattern"),
    ("graph: g.py:build\nsteps:\n  - {name: s, agents: [{role: a, prompt: x}]}\n",
     "steps: not used by a scenario of graph"),
    ("graph: g.py:build\ninputs: {topic: x}\n", "inputs: not used by a scenario of graph"),
    ("input: {q: x}\nsteps:\n  - {name: s, agents: [{role: a, prompt: x}]}\n",
     "input: not used by a scenario of steps"),
    ("graph: g.py:build\nconfig: {max_concurrency: 4}\n", "config.max_concurrency: set by the runner"),
    ("name: nothing\n", "needs 'steps' .* or 'graph'"),
])
def test_bad_graph_scenarios_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "g.py", "def build(base_url):\n    return None\n")
    write(tmp_path, "g.txt", "")
    with pytest.raises(ScenarioError, match=message) as excinfo:
        load_scenario(write(tmp_path, "s.yaml", text))
    assert "\n" not in str(excinfo.value)


def ref(tmp_path: Path, source: str, attribute: str = "build", name: str = "graph.py") -> GraphRef:
    return GraphRef(file=write(tmp_path, name, source), attribute=attribute)


ENDPOINT = "http://127.0.0.1:9/c7/v1"
"""A channel's base URL, as the endpoint's environment names it here (nothing listens: nothing is sent)."""


def load(graph_ref: GraphRef) -> App:
    return load_app(graph_ref, endpoint_environ(ENDPOINT))


def test_the_builder_is_found_and_the_file_can_import_its_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", "SUFFIX = '/checked'\n")
    app = load(ref(tmp_path, "from helpers import SUFFIX\n"
                             "class Nested:\n    @staticmethod\n"
                             "    def build(base_url):\n        return base_url + SUFFIX\n",
                   attribute="Nested.build"))
    assert app.call == "base_url" and app.target("http://x/v1") == "http://x/v1/checked"
    assert str(tmp_path) not in sys.path  # the file's directory was on it only while the file loaded


def test_a_missing_attribute_names_what_the_file_defines(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"has no attribute 'biuld' \(it defines: build, other\)") as excinfo:
        load(ref(tmp_path, "def build(u): ...\nother = 1\n_private = 2\n", attribute="biuld"))
    assert excinfo.value.user_traceback == ""


def test_a_module_that_raises_on_import_shows_the_users_traceback(tmp_path: Path) -> None:
    graph_ref = ref(tmp_path, "import os\n\nSETTING = os.environ['VRAMCAP_NO_SUCH_VARIABLE']\n")
    with pytest.raises(GraphError, match="cannot be imported: KeyError: 'VRAMCAP_NO_SUCH_VARIABLE'") as excinfo:
        load(graph_ref)
    trace = excinfo.value.user_traceback
    assert trace.startswith("Traceback (most recent call last):\n") and "graph.py\", line 3" in trace
    assert "importlib" not in trace and "pytest_vramcap" not in trace
    assert "\n" not in str(excinfo.value)


def test_a_missing_graph_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what an environment without the extra looks like (an earlier test may have imported langgraph's modules)
    for name in [name for name in sys.modules if name.split(".")[0] == "langgraph"] + ["langgraph"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(GraphError, match=r"imports langgraph, which is not installed: .*pytest-vramcap\[graph\]"):
        load(ref(tmp_path, "from langgraph.graph import StateGraph\n", name="needs_extra.py"))


def test_build_that_raises_shows_only_the_users_frames(tmp_path: Path) -> None:
    app = load(ref(tmp_path, "def helper(url):\n    raise ValueError(f'no model at {url}')\n\n"
                             "def build(base_url):\n    return helper(base_url)\n", name="raises.py"))
    with pytest.raises(GraphError, match=r"raises.py:build\('http://p/v1'\) raised ValueError: no model at "
                                         r"http://p/v1$") as excinfo:
        app.graph("http://p/v1")
    trace = excinfo.value.user_traceback
    assert trace.splitlines()[1].endswith("in build") and "in helper" in trace and "ValueError: no model at" in trace
    assert "graph_source" not in trace


def test_build_must_return_a_graph() -> None:
    with pytest.raises(GraphError, match=r"returned a str, not a graph with ainvoke.*compile"):
        app_of(lambda url: url, PLACE).graph("http://p/v1")
    graph = FakeGraph()
    assert app_of(lambda url: graph, PLACE).graph("http://p/v1") is graph


# ------------------------------------------------------------------ what ATTR is, by its signature

KINDS = """
from typing import Any

class Graph:
    async def ainvoke(self, input, config=None):
        return input

graph = Graph()

def build(base_url): return (Graph(), ('build', base_url))
def by_url(url): return (Graph(), ('url', url))
def typed(where: str): return (Graph(), ('str', where))
def make_graph(config): return (Graph(), ('config', config))
def make_cfg(cfg): return (Graph(), ('config', cfg))
def typed_config(c: 'RunnableConfig'): return (Graph(), ('config', c))
def optional_config(config=None): return (Graph(), ('config', config))
def factory(): return (Graph(), ('none',))
def with_defaults(retries=3, *args, **kwargs): return (Graph(), ('none',))

class Agent:
    def __init__(self):
        self.made = ('none',)
    async def ainvoke(self, input, config=None):
        return input
"""


@pytest.mark.parametrize("attribute, call, args", [
    ("graph", "graph", None),
    ("build", "base_url", ("build", ENDPOINT)),
    ("by_url", "base_url", ("url", ENDPOINT)),
    ("typed", "base_url", ("str", ENDPOINT)),
    ("make_graph", "config", ("config", {"recursion_limit": 9, "configurable": {"user": "u"}})),
    ("make_cfg", "config", ("config", {"recursion_limit": 9, "configurable": {"user": "u"}})),
    ("typed_config", "config", ("config", {"recursion_limit": 9, "configurable": {"user": "u"}})),
    ("optional_config", "config", ("config", {"recursion_limit": 9, "configurable": {"user": "u"}})),
    ("factory", "none", ("none",)),
    ("with_defaults", "none", ("none",)),
    ("Agent", "none", None),
])
def test_what_attr_names_decides_how_the_graph_is_had(tmp_path: Path, attribute: str, call: str,
                                                      args: tuple | None) -> None:
    app = load(ref(tmp_path, KINDS, attribute=attribute, name="kinds.py"))
    assert app.call == call and app.shared is (call == "graph")
    config = {"recursion_limit": 9, "configurable": {"user": "u"}}
    if attribute in ("build", "by_url", "typed", "make_graph", "make_cfg", "typed_config", "optional_config",
                     "factory", "with_defaults"):
        _graph, seen = app.target(*{"base_url": (ENDPOINT,), "config": (config,), "none": ()}[call])
        assert seen == args
        with pytest.raises(GraphError, match="returned a tuple, not a graph"):
            app.graph(ENDPOINT, config)
    else:
        assert hasattr(app.graph(ENDPOINT, config), "ainvoke")


def test_a_factory_gets_a_config_with_configurable_and_runs_with_the_channel_in_its_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", "http://theirs:11434")
    app = load(ref(tmp_path, "import os\n"
                             "class Graph:\n    async def ainvoke(self, input, config=None): ...\n"
                             "SEEN = []\n"
                             "def make_graph(config):\n"
                             "    SEEN.append((config, {k: os.environ.get(k) for k in ('OPENAI_BASE_URL', "
                             "'OPENAI_API_BASE', 'OLLAMA_HOST', 'OPENAI_API_KEY')}))\n"
                             "    return Graph()\n", attribute="make_graph", name="factory.py"))
    app.graph("http://127.0.0.1:5/c9/v1", {"recursion_limit": 5})
    [(config, environ)] = app.target.__globals__["SEEN"]
    assert config == {"recursion_limit": 5, "configurable": {}}
    assert environ == {"OPENAI_BASE_URL": "http://127.0.0.1:5/c9/v1", "OPENAI_API_BASE": "http://127.0.0.1:5/c9/v1",
                       "OLLAMA_HOST": "http://127.0.0.1:5/c9", "OPENAI_API_KEY": "vramcap"}
    # put back afterwards: the user's own value, and nothing where there was none
    assert os.environ["OLLAMA_HOST"] == "http://theirs:11434" and "OPENAI_API_KEY" not in os.environ


def test_module_level_clients_read_the_endpoint_as_the_module_loads(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mine")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    app = load(ref(tmp_path, "import os\n"
                             "AT_IMPORT = {k: os.environ.get(k) for k in ('OPENAI_BASE_URL', 'OLLAMA_HOST', "
                             "'OPENAI_API_KEY')}\n"
                             "class Graph:\n    async def ainvoke(self, input, config=None): ...\n"
                             "graph = Graph()\n", attribute="graph", name="module_level.py"))
    assert app.shared
    module = sys.modules[type(app.target).__module__]
    assert module.AT_IMPORT == {"OPENAI_BASE_URL": ENDPOINT, "OLLAMA_HOST": "http://127.0.0.1:9/c7",
                                "OPENAI_API_KEY": "sk-mine"}  # a key of the user's is kept
    assert "OPENAI_BASE_URL" not in os.environ


@pytest.mark.parametrize("source, message", [
    ("thing = 3\n", r"graph.py:thing: is a int, neither a graph \(no ainvoke\) nor a callable that makes one"),
    ("def thing(a, b): ...\n", r"thing\(a, b\) needs a, b: vramcap calls it with one argument at most"),
    ("def thing(*, key): ...\n", r"thing\(key\) needs key"),
])
def test_what_cannot_be_called_is_one_line_before_anything_runs(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(GraphError, match=message) as excinfo:
        load(ref(tmp_path, source, attribute="thing"))
    assert "\n" not in str(excinfo.value) and excinfo.value.user_traceback == ""


def test_one_parameter_that_says_neither_gets_the_base_url_as_before() -> None:
    """Scenarios written for build(base_url) keep working whatever they named its parameter."""
    seen: list[str] = []

    def make(u):  # type: ignore[no-untyped-def]
        seen.append(u)
        return FakeGraph()

    app = app_of(make, PLACE)
    assert app.call == "base_url" and isinstance(app.graph(ENDPOINT), FakeGraph) and seen == [ENDPOINT]


def test_an_async_factory_is_refused_in_one_line_before_it_is_called() -> None:
    """Refused when the file is checked (before a server starts for it), not when the graph is first made."""
    async def make_graph(config: dict) -> FakeGraph:  # type: ignore[type-arg]
        return FakeGraph()

    with pytest.raises(GraphError, match=r"is async: .* not supported yet"):
        app_of(make_graph, PLACE)

    def returns_a_coroutine():  # type: ignore[no-untyped-def]  # sync, but hands back an awaitable: said when made
        return make_graph({})

    with pytest.raises(GraphError, match=r"is async: .* not supported yet"):
        app_of(returns_a_coroutine, PLACE).graph(ENDPOINT)


def test_the_endpoint_environment() -> None:
    environ = endpoint_environ("http://127.0.0.1:41/c3/v1")
    assert environ["OLLAMA_HOST"] == "http://127.0.0.1:41/c3"  # Ollama's own API is beside /v1, not under it
    assert environ["OPENAI_BASE_URL"] == environ["OPENAI_API_BASE"] == "http://127.0.0.1:41/c3/v1"


# ------------------------------------------------------------------ langgraph.json

def test_langgraph_json_names_the_graph_relative_to_itself(tmp_path: Path) -> None:
    agent = write(tmp_path / "app" / "src", "agent.py", "graph = None\n")
    write(tmp_path / "app", "langgraph.json", json.dumps({"dependencies": ["."], "graphs": {
        "agent": "./src/agent.py:graph", "other": {"path": "src/agent.py:make_graph", "description": "d"}}}))
    scenario = load_scenario(write(tmp_path, "s.yaml", "graph: app/langgraph.json:agent\n"))
    assert scenario.graph == GraphRef(file=agent.resolve(), attribute="graph", via="langgraph.json:agent")
    other = load_scenario(write(tmp_path, "o.yaml", "graph: app/langgraph.json:other\n")).graph
    assert other is not None and other.file == agent.resolve() and other.attribute == "make_graph"


@pytest.mark.parametrize("document, message", [
    ('{"graphs": {"agent": "./agent.py:graph"}}', r"langgraph.json has no graph 'nope' \(it names: agent\)"),
    ('{"graphs": {"agent": ', r"langgraph.json is not JSON: Expecting value \(line 1, column 22\)"),
    ('[1, 2]', r"langgraph.json is not a langgraph.json: it has no 'graphs' mapping"),
    ('{"graphs": {"nope": "agent.graph:graph"}}', r"graph 'nope' is 'agent.graph:graph': vramcap imports graphs "
                                                  r"from files"),
    ('{"graphs": {"nope": 3}}', r"graph 'nope' is not a \"./file.py:attribute\" string"),
    ('{"graphs": {"nope": "./missing.py:graph"}}', r"graph file .*missing.py' does not exist"),
])
def test_a_langgraph_json_that_does_not_name_the_graph_is_one_line(tmp_path: Path, document: str,
                                                                   message: str) -> None:
    write(tmp_path, "agent.py", "graph = None\n")
    write(tmp_path, "langgraph.json", document)
    with pytest.raises(ScenarioError, match=message) as excinfo:
        load_scenario(write(tmp_path, "s.yaml", "graph: langgraph.json:nope\n"))
    assert "\n" not in str(excinfo.value)
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(write(tmp_path, "t.yaml", "graph: nowhere/langgraph.json:agent\n"))
