"""Locust with agent users, run as users run it: ``locust -f locustfiles/agents.py`` and ``vramcap load``.

Each test runs Locust in a child process (importing Locust monkey-patches a process for gevent),
against a real llama-server it plans and starts itself, with a small graph; a run stops after a
number of finished graphs, not on a clock. They check what Locust reports and that no process of
theirs is left.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pytest_vramcap.engines import free_port
from tests.helpers import needs_llama_server, processes_with

pytestmark = needs_llama_server

REPO = Path(__file__).parents[2]
LOCUSTFILE = REPO / "locustfiles" / "agents.py"
SMALL_GRAPH = """\
name: pair-then-judge
inputs: {topic: tests}
steps:
  - name: draft
    agents:
      - {role: coder, prompt: "Code about {topic}", max_tokens: 6}
      - {role: writer, prompt: "Docs about {topic}", max_tokens: 6}
  - name: review
    agents:
      - {role: critic, prompt: "Judge {draft.coder} and {draft.writer}", max_tokens: 4, turns: 2, turn_tokens: 20}
"""


def locust(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LLAMA_ARG_REPACK": "0", "PYTHONPATH": str(REPO)})


def embedded(tmp_path: Path) -> list[str]:
    """The plan options that start a small embedded server whose command line names ``tmp_path``."""
    return ["--vram-profile", "16gb", "--vramcap-model", "tiny:Q8_0", "--vramcap-agents", "2",
            "--vramcap-ctx", "512", "--vramcap-models-dir", str(tmp_path / "models")]


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    path = tmp_path / "pair.yaml"
    path.write_text(SMALL_GRAPH)
    return path


def test_the_locustfile_starts_the_plan_reports_agent_metrics_and_stops(tmp_path: Path, graph: Path) -> None:
    result = locust("-u", "2", "-r", "2", "-t", "180s", "--vramcap-graphs", "3", *embedded(tmp_path),
                    "--vramcap-scenario", str(graph), "--csv", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "vramcap: serving at http://127.0.0.1:" in result.stderr
    rows = {(row["Type"], row["Name"]): row for row in csv.DictReader((tmp_path / "run_stats.csv").open())}
    graphs = rows[("GRAPH", "pair-then-judge")]
    failures = (tmp_path / "run_failures.csv").read_text()
    assert int(graphs["Request Count"]) >= 3 and graphs["Failure Count"] == "0", (graphs, failures)
    for metric in ("TTFT", "TPOT", "E2E"):
        for agent in ("draft.coder", "draft.writer", "review.critic"):
            assert int(rows[(metric, agent)]["Request Count"]) >= 1, (metric, agent)
    # response_length is output tokens: ignore_eos fixes them to max_tokens
    assert float(rows[("E2E", "draft.coder")]["Average Content Size"]) == 6
    # the critic holds a two-turn conversation in every graph: two requests in each that finished
    assert int(rows[("E2E", "review.critic")]["Request Count"]) >= 2 * int(graphs["Request Count"])
    assert processes_with(str(tmp_path)) == []  # llama-server (its model is under tmp_path) is gone


def test_the_web_ui_has_a_vram_tab_and_page_with_the_plan_and_live_counters(tmp_path: Path, graph: Path) -> None:
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    log = tmp_path / "locust.log"
    locust_ui = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port),
         "--autostart", "-u", "1", "-r", "1", "-t", "300s", *embedded(tmp_path), "--vramcap-scenario", str(graph)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        env={**os.environ, "LLAMA_ARG_REPACK": "0", "PYTHONPATH": str(REPO)})
    try:
        data = wait_for_requests(f"{ui}/vramcap/data", locust_ui, log)
        assert data["plan"]["config"]["parallel"] == 2 and data["plan"]["profile"]["name"] == "16gb"
        assert data["server"]["tokens_predicted_total"] >= 0 and "requests_processing" in data["server"]
        stats = httpx.get(f"{ui}/stats/requests", timeout=30).json()
        tab = next(table for table in stats["extended_stats"] if table["key"] == "vramcap")
        items = {(row["section"], row["item"]) for row in tab["data"]}
        assert {("plan", "slots x context"), ("server", "requests deferred (queued)"),
                ("load", "output tokens/s (last 10 s)")} <= items
        assert '"key": "vramcap"' in httpx.get(ui, timeout=30).text  # the tab is in the UI's template args
        page = httpx.get(f"{ui}/vramcap", timeout=30)
        assert page.status_code == 200 and "vramcap/data" in page.text
    finally:
        locust_ui.terminate()
        locust_ui.wait(timeout=60)
    assert processes_with(str(tmp_path)) == []


def wait_for_requests(url: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    """The page's data once the run has finished a request (the server's first start takes a while here)."""
    for _ in range(600):
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            data = httpx.get(url, timeout=30).json()
            if data["load"]["requests"] >= 1:
                return data  # type: ignore[no-any-return]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no request finished: {log.read_text()[-3000:]}")


def test_a_master_and_two_workers_share_one_server_and_count_the_whole_run(tmp_path: Path, graph: Path) -> None:
    port = str(free_port())
    env = {**os.environ, "LLAMA_ARG_REPACK": "0", "PYTHONPATH": str(REPO)}
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-port",
                                 port, "--vramcap-scenario", str(graph)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=log.open("w")) for log in logs]
    try:
        master = locust("--master", "--master-bind-port", port, "--expect-workers", "2", "-u", "2", "-r", "2",
                        "-t", "180s", "--vramcap-graphs", "3", *embedded(tmp_path), "--vramcap-scenario", str(graph),
                        "--csv", str(tmp_path / "run"), cwd=tmp_path)
        for worker in workers:
            worker.wait(timeout=60)
    finally:
        for worker in workers:
            worker.kill()
    assert master.returncode == 0, master.stderr[-3000:]
    assert [worker.returncode for worker in workers] == [0, 0], [log.read_text()[-2000:] for log in logs]
    # Each worker ran one user against the master's server; Locust's table and our counts are the whole run's.
    rows = {(row["Type"], row["Name"]): row for row in csv.DictReader((tmp_path / "run_stats.csv").open())}
    assert int(rows.get(("GRAPH", "pair-then-judge"), {}).get("Request Count", 0)) >= 3, master.stderr[-3000:]
    summary = [line for line in master.stderr.splitlines() if "output tokens:" in line]
    assert summary and "(whole run, 2 workers)" in summary[0], master.stderr[-2000:]
    graphs, tokens = int(summary[0].split()[1]), int(summary[0].split("failed), ")[1].split()[0])
    assert graphs >= 3 and tokens >= 3 * (6 + 6 + 4), summary  # ignore_eos: a graph streams 16 tokens
    assert processes_with(str(tmp_path)) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "http://127.0.0.1:{port}", "--vram-profile", "16gb"], "--host and --vram-profile both given"),
    (["--host", "http://127.0.0.1:{port}"], "cannot reach --host http://127.0.0.1:"),
    (["--vram-profile", "16gb", "--vramcap-scenario", "missing.yaml"], "scenario file 'missing.yaml' does not exist"),
    (["--vram-profile", "99zz"], "unknown VRAM profile '99zz'"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(args: list[str], message: str, tmp_path: Path) -> None:
    port = free_port()
    result = locust("-u", "1", "-t", "5s", *(arg.format(port=port) for arg in args),
                    "--vramcap-models-dir", str(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("vramcap: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert processes_with(str(tmp_path)) == []


def test_vramcap_load_gates_on_slos_and_keeps_locusts_reports(tmp_path: Path, graph: Path) -> None:
    report = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest_vramcap.cli", "load", "--model", "tiny:Q8_0", "--agents", "2", "--ctx", "512",
         "--models-dir", str(tmp_path / "models"), "--scenario", str(graph), "--users", "2", "--graphs", "3",
         "--run-time", "200",
         "--slo", "failure_ratio=0.5", "--slo", "output_tps=1e9", "--csv", str(tmp_path / "l"),
         "--html", str(tmp_path / "l.html"), "--json", str(report)],
        capture_output=True, text=True, timeout=400, cwd=tmp_path, env={**os.environ, "LLAMA_ARG_REPACK": "0"})
    assert result.returncode == 1, result.stderr[-3000:]  # no server reaches a billion tokens/s
    data = json.loads(report.read_text())
    outcomes = {v["name"]: v["outcome"] for v in data["verdicts"]}
    assert outcomes == {"slo:failure_ratio": "pass", "slo:output_tps": "fail"}
    assert data["graphs"] >= 3 and data["summary"]["errors"] == 0 and data["summary"]["output_tokens"] > 0, \
        result.stdout
    assert data["summary"]["token_count_source"] == ["usage"]
    assert "[FAIL] slo:output_tps" in result.stdout
    assert "<html" in (tmp_path / "l.html").read_text()[:500].lower()
    rows = {(row["Type"], row["Name"]): row for row in csv.DictReader((tmp_path / "l_stats.csv").open())}
    assert int(rows[("GRAPH", "pair-then-judge")]["Request Count"]) == data["graphs"]  # the CSV holds the end
    assert processes_with(str(tmp_path)) == []


def test_a_server_killed_mid_load_fails_the_run_in_one_line_without_a_retry_storm(tmp_path: Path, graph: Path,
                                                                                   tiny_model: Path) -> None:
    """The engine killed mid-run (issue 28): the requests that cannot connect are `connection` failures, the run
    ends at its time with an `engine` verdict and exit 1, and each user waits before retrying a dead server."""
    from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
    from pytest_vramcap.planner.memory import ServerConfig

    server = LlamaServer(ServerConfig(parallel=2, ctx_per_agent=512), tiny_model,
                         EngineOptions(log_dir=tmp_path, startup_timeout_s=120)).start()
    report, run_time = tmp_path / "load.json", 20
    with subprocess.Popen([sys.executable, "-m", "pytest_vramcap.cli", "load", "--server-url", server.url,
                           "--scenario", str(graph), "--users", "2", "--run-time", str(run_time), "--json",
                           str(report)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=tmp_path) as load:
        try:
            deadline = time.monotonic() + 200
            while server.log_path.read_text(errors="replace").count("processing task") < 2:
                assert time.monotonic() < deadline and load.poll() is None, "no request reached the server"
                time.sleep(0.1)
        finally:
            server.stop()  # killed mid-run, from the load's point of view
        out, _ = load.communicate(timeout=300)
    assert load.returncode == 1, out[-3000:]
    assert "[FAIL] engine: the server stopped answering: " in out, out[-3000:]
    data = json.loads(report.read_text())
    refused = data["summary"]["failures"]["connection"]
    # each user waits a second after a graph that could not connect (a graph is 3 requests, all refused at once)
    assert 0 < refused <= 2 * 3 * (run_time + 1), refused


@pytest.mark.parametrize(("ttft_p95", "code", "knee", "verdict"), [
    ("600", 0, 2, "knee: at least 2 concurrent agents meet TTFT p95 <= 600 s on 16gb (the ramp stopped at "
                  "--max-users 2); the plan has 2 slots"),
    ("0.0001", 1, None, "knee: none: even 1 agent(s) miss TTFT p95 <= 0.0001 s on 16gb; the plan has 2 slots"),
])
def test_vramcap_capacity_steps_agents_up_to_the_knee(tmp_path: Path, ttft_p95: str, code: int, knee: int | None,
                                                      verdict: str) -> None:
    """No outcome here rests on a clock: no HTTP answer comes within 0.1 ms, and every one within 600 s."""
    report = tmp_path / "capacity.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest_vramcap.cli", "capacity", "--model", "tiny:Q8_0", "--agents", "2", "--ctx",
         "512", "--models-dir", str(tmp_path / "models"), "--ttft-p95", ttft_p95, "--max-users", "2",
         "--step-time", "3", "--json", str(report)],
        capture_output=True, text=True, timeout=400, cwd=tmp_path, env={**os.environ, "LLAMA_ARG_REPACK": "0"})
    assert result.returncode == code, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == verdict
    data = json.loads(report.read_text())
    assert data["knee"] == knee and data["planned_slots"] == 2
    assert [step["users"] for step in data["steps"]] == ([1, 2] if knee else [1])
    assert all(step["requests"] >= 1 and step["failed"] == 0 for step in data["steps"]), data["steps"]
    assert processes_with(str(tmp_path)) == []
