"""Graph scenarios without a server: the YAML keys, importing the user's file, calling build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_vramcap.errors import GraphError, ScenarioError
from pytest_vramcap.load.scenario.graph_source import build_graph, load_builder
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
    ("graph: g.py\n", "is not FILE.py:ATTRIBUTE"),
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


def test_the_builder_is_found_and_the_file_can_import_its_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", "SUFFIX = '/checked'\n")
    builder = load_builder(ref(tmp_path, "from helpers import SUFFIX\n"
                                         "class Nested:\n    @staticmethod\n"
                                         "    def build(base_url):\n        return base_url + SUFFIX\n",
                               attribute="Nested.build"))
    assert builder("http://x/v1") == "http://x/v1/checked"
    assert str(tmp_path) not in sys.path  # the file's directory was on it only while the file loaded


def test_a_missing_attribute_names_what_the_file_defines(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"has no attribute 'biuld' \(it defines: build, other\)") as excinfo:
        load_builder(ref(tmp_path, "def build(u): ...\nother = 1\n_private = 2\n", attribute="biuld"))
    assert excinfo.value.user_traceback == ""
    with pytest.raises(GraphError, match="is a int, not a callable build"):
        load_builder(ref(tmp_path, "build = 3\n", name="three.py"))


def test_a_module_that_raises_on_import_shows_the_users_traceback(tmp_path: Path) -> None:
    graph_ref = ref(tmp_path, "import os\n\nSETTING = os.environ['VRAMCAP_NO_SUCH_VARIABLE']\n")
    with pytest.raises(GraphError, match="cannot be imported: KeyError: 'VRAMCAP_NO_SUCH_VARIABLE'") as excinfo:
        load_builder(graph_ref)
    trace = excinfo.value.user_traceback
    assert trace.startswith("Traceback (most recent call last):\n") and "graph.py\", line 3" in trace
    assert "importlib" not in trace and "pytest_vramcap" not in trace
    assert "\n" not in str(excinfo.value)


def test_a_missing_graph_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what an environment without the extra looks like (an earlier test may have imported langgraph's modules)
    for name in [name for name in sys.modules if name.split(".")[0] == "langgraph"] + ["langgraph"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(GraphError, match=r"imports langgraph, which is not installed: .*pytest-vramcap\[graph\]"):
        load_builder(ref(tmp_path, "from langgraph.graph import StateGraph\n", name="needs_extra.py"))


def test_build_that_raises_shows_only_the_users_frames(tmp_path: Path) -> None:
    builder = load_builder(ref(tmp_path, "def helper(url):\n    raise ValueError(f'no model at {url}')\n\n"
                                         "def build(base_url):\n    return helper(base_url)\n", name="raises.py"))
    with pytest.raises(GraphError, match=r"raised ValueError: no model at http://p/v1$") as excinfo:
        build_graph(builder, "http://p/v1", GraphRef.of(builder))
    trace = excinfo.value.user_traceback
    assert trace.splitlines()[1].endswith("in build") and "in helper" in trace and "ValueError: no model at" in trace
    assert "build_graph" not in trace


def test_build_must_return_a_graph() -> None:
    with pytest.raises(GraphError, match=r"returned a str, not a graph with ainvoke.*compile"):
        build_graph(lambda url: url, "http://p/v1", PLACE)
    graph = FakeGraph()
    assert build_graph(lambda url: graph, "http://p/v1", PLACE) is graph
