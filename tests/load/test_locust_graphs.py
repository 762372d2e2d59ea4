"""A user's LangGraph graph as Locust users: ``vramcap load`` and the locustfile, each in a child process (Locust
monkey-patches for gevent), on a real llama-server they start; runs stop after a number of graphs, not on a clock."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import needs_llama_server, processes_with
from tests.load.test_graph_run import scenario_file, write_app
from tests.load.test_locust import embedded, locust

pytest.importorskip("langgraph", reason="LangGraph comes with the graph extra (dev installs it)")
pytestmark = needs_llama_server


def graph_scenario(tmp_path: Path, topic: str = "GPUs") -> Path:
    """Two workers of 12 tokens and a judge: short graphs, as many as a busy machine finishes."""
    return scenario_file(tmp_path, topic, width=2, tokens=12, name="fan-out")


def stats(prefix: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(row["Type"], row["Name"]): row for row in csv.DictReader(Path(f"{prefix}_stats.csv").open())}


def load_three_graphs(tmp_path: Path, scenario: Path) -> subprocess.CompletedProcess[str]:
    """``vramcap load`` with 2 users on the tiny model until 3 graphs finished (time is only a backstop); CSV at
    ``tmp_path/l``."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_vramcap.cli", "load", "--model", "tiny:Q8_0", "--agents", "2", "--ctx", "512",
         "--models-dir", str(tmp_path / "models"), "--scenario", str(scenario), "--users", "2",
         "--graphs", "3", "--run-time", "600", "--csv", str(tmp_path / "l")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env={**os.environ, "LLAMA_ARG_REPACK": "0"})


def test_vramcap_load_runs_a_users_graph_and_reports_each_agent(tmp_path: Path) -> None:
    result = load_three_graphs(tmp_path, graph_scenario(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fan-out: 2 users" in result.stdout and "failures: none" in result.stdout
    # every request of the graph audited through the proxy: llama-server reads its max_tokens
    assert "[PASS] output_budget:" in result.stdout
    rows = stats(tmp_path / "l")
    graphs = int(rows[("GRAPH", "fan-out")]["Request Count"])
    assert graphs >= 3
    for kind in ("TTFT", "TPOT", "E2E"):  # the graph's X-Vramcap-Label headers name Locust's entries
        assert int(rows[(kind, "work")]["Request Count"]) >= 2 * graphs
        assert int(rows[(kind, "judge")]["Request Count"]) >= graphs
    assert processes_with(str(tmp_path)) == []


@pytest.mark.parametrize("attribute", ["graph", "make_graph"])
def test_vramcap_load_runs_an_app_as_written(tmp_path: Path, attribute: str) -> None:
    # "graph": compiled at module level, its ChatOpenAI clients made as the module loaded (OPENAI_BASE_URL): one
    # graph for the process, its requests on the endpoint's one channel; "make_graph": a factory per user
    write_app(tmp_path / "app", attribute)
    (tmp_path / "app.yaml").write_text("name: app\ngraph: app/langgraph.json:agent\n"
                                       "input: {topic: GPUs, notes: []}\n")
    result = load_three_graphs(tmp_path, tmp_path / "app.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "app: 2 users" in result.stdout and "failures: none" in result.stdout
    rows = stats(tmp_path / "l")
    graphs = int(rows[("GRAPH", "app")]["Request Count"])
    assert graphs >= 3
    for kind in ("TTFT", "E2E"):  # every request recorded, whoever made the client
        assert int(rows[(kind, "work")]["Request Count"]) >= 3 * graphs
        assert int(rows[(kind, "judge")]["Request Count"]) >= graphs
    assert processes_with(str(tmp_path)) == []


def test_the_locustfile_reports_a_graph_that_raises_as_a_failed_graph(tmp_path: Path) -> None:
    scenario = graph_scenario(tmp_path, topic="explode")
    result = locust(*embedded(tmp_path), "--vramcap-scenario", str(scenario), "-u", "1", "-r", "1",
                    "--vramcap-graphs", "2", "-t", "200", "--csv", str(tmp_path / "l"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]  # Locust's exit code when a request failed
    failures = list(csv.DictReader((tmp_path / "l_failures.csv").open()))
    assert [(f["Method"], f["Name"]) for f in failures] == [("GRAPH", "fan-out")]
    assert "graph_error: RuntimeError: worker exploded on purpose" in failures[0]["Error"]
    assert processes_with(str(tmp_path)) == []


def test_a_graph_that_cannot_be_imported_stops_locust_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text("import json\n\nCONFIG = json.loads('{not json')\n")
    (tmp_path / "g.yaml").write_text("graph: g.py:build\n")
    result = locust(*embedded(tmp_path), "--vramcap-scenario", str(tmp_path / "g.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("vramcap: error: ") and "g.py cannot be imported: JSONDecodeError" in lines[-1]
    assert 'g.py", line 3, in <module>' in result.stderr  # the user's frame, shown once
    assert result.stderr.count("Traceback") == 1 and "vramcap: serving" not in result.stderr  # no server started
    assert processes_with(str(tmp_path)) == []


def test_vramcap_load_names_a_missing_builder_before_starting_a_server(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text("def build(base_url):\n    return None\n")
    (tmp_path / "g.yaml").write_text("graph: g.py:biuld\n")
    result = subprocess.run([sys.executable, "-m", "pytest_vramcap.cli", "load", "--model", "tiny:Q8_0",
                             "--models-dir", str(tmp_path / "models"), "--scenario", str(tmp_path / "g.yaml")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"vramcap: error: {tmp_path / 'g.py'} has no attribute 'biuld' (it defines: build)"]


@pytest.mark.parametrize("runner", ["vramcap load", "locustfile"])
def test_a_build_that_raises_stops_the_run_with_its_traceback_once(tmp_path: Path, runner: str) -> None:
    (tmp_path / "g.py").write_text("def build(base_url):\n    return connect(base_url)\n\n\n"
                                   "def connect(url):\n    raise ConnectionError(f'no registry at {url}')\n")
    (tmp_path / "g.yaml").write_text("graph: g.py:build\n")
    if runner == "locustfile":
        result = locust(*embedded(tmp_path), "--vramcap-scenario", str(tmp_path / "g.yaml"), "-u", "3", "-r", "3",
                        "-t", "200", cwd=tmp_path)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "pytest_vramcap.cli", "load", "--model", "tiny:Q8_0", "--agents", "2", "--ctx",
             "512", "--models-dir", str(tmp_path / "models"), "--scenario", str(tmp_path / "g.yaml"), "--users", "3",
             "--run-time", "200"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env={**os.environ, "LLAMA_ARG_REPACK": "0"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count("Traceback (most recent call last)") == 1 and "in connect" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("vramcap: error: ")
    assert "g.py:build('http://127.0.0.1:" in result.stderr and "raised ConnectionError" in result.stderr
    assert processes_with(str(tmp_path)) == []


TWO_GRAPHS_IN_ONE_PROCESS = """
import sys

import locust  # monkey-patches the process for gevent, as under Locust

from pytest_vramcap.locust.graphs import GraphHosts, UserGraph
from pytest_vramcap.load.scenario.schema import load_scenario
from tests.scripted_engine import ScriptedEngine

EVENTS = [{"id": "x", "choices": [{"index": 0, "delta": {"content": "t"}}]},
          {"id": "x", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}]
with ScriptedEngine(EVENTS) as engine:
    hosts = GraphHosts()  # what a run's users share (VramcapRun.graph_hosts)
    users = [UserGraph(load_scenario(path), engine.url, None, hosts=hosts, on_start=print,
                       on_end=lambda record: None) for path in sys.argv[1:]]
    print([len(user.invoke()[0]) for user in users])
    hosts.close()
"""


def test_graph_users_of_two_scenarios_share_one_event_loop(tmp_path: Path) -> None:
    # asyncio keeps one running loop per OS thread, and Locust's greenlets are all on one: a loop per scenario hung
    scenarios = [graph_scenario(tmp_path / name, topic=name) for name in ("a", "b")]
    script = tmp_path / "two.py"
    script.write_text(TWO_GRAPHS_IN_ONE_PROCESS)
    result = subprocess.run([sys.executable, str(script), *map(str, scenarios)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[3, 3]"  # each user's graph: two workers and the judge


SHARED_CHANNEL = """
import locust  # monkey-patches the process for gevent, as under Locust

from pytest_vramcap.load.measure.record import RequestRecord
from pytest_vramcap.locust.graphs import GraphHosts


class User:  # what GraphHosts asks of a UserGraph sharing the endpoint
    def __init__(self):
        self.stopped, self.ended, self.forgotten = False, [], []

    def on_start(self, record):
        pass

    def on_end(self, record):
        self.ended.append(record.label)

    def forget(self, record):
        self.forgotten.append(record.label)


def request(channel, label, ok):
    record = RequestRecord(label=label, t_send=0.0, error=None if ok else "cut")
    channel.begin(record)
    channel.end(record)


hosts = GraphHosts()
first, second = User(), User()
channel = hosts.share(first, "http://127.0.0.1:9", None)
assert hosts.share(second, "http://127.0.0.1:9", None) is channel
request(channel, "ok", True)
first.stopped = True
hosts.unshare(first)  # the web UI stopped a user: a failure now may be its cut request
request(channel, "hidden", False)
hosts.new_test()  # Start again: failures count again
request(channel, "counted", False)
print(first.ended + second.ended, second.forgotten, len(channel.records))  # each once, by the first still running
hosts.close()
assert channel.keep_records  # the endpoint keeps records again for runs that read them
"""


def test_a_shared_channel_keeps_no_records_and_counts_failures_again_in_a_new_test(tmp_path: Path) -> None:
    """A module-level graph's users share one channel: every request is reported as it ends and none is kept (hours
    of them would pile up); a failure right after a user stopped is dropped from the counts but no longer in
    flight, and a new test (the web UI's Start) counts failures again."""
    script = tmp_path / "shared.py"
    script.write_text(SHARED_CHANNEL)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "['ok', 'counted'] ['hidden'] 0"
