"""The shipped seed graph (scenarios/seed_agents.py: module-level ChatOllama, module-level graph) run as written.

On the embedded llama-server the proxy translates Ollama's /api/chat; on the Ollama double
(tests/ollama_double: no Ollama can be installed here) and on a real ``ollama`` when one is on
PATH, it relays it. Either way every request is timed and carries the app's options, which the
client_options verdict holds against the plan.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.engines.ollama import OllamaServer
from pytest_vramcap.load.run.apps import run_on_process_loop
from pytest_vramcap.load.run.rounds import ScenarioRun
from pytest_vramcap.load.run.steps import run_both
from pytest_vramcap.load.scenario.schema import load_scenario
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.report.client_options import client_options_verdict
from tests.helpers import needs_llama_server
from tests.ollama_double import launcher

pytest.importorskip("langchain_ollama", reason="the seed graph needs the graph extra (dev installs it)")
pytestmark = needs_llama_server

SEED = Path(__file__).parents[2] / "scenarios" / "seed-agents.yaml"
ONE_THREAD = {"LLAMA_ARG_THREADS": "1"}
"""The graph asks for 192 tokens an answer: on a busy 2-core machine (-n 2) two servers with a thread per core spin
against each other (measured: 1.2 tokens/s instead of about 100); one thread each keeps it to seconds."""
SHAPE = spec_from_shape("qwen2.5-14b", "Q4_K_M")


def verdict_for(run: ScenarioRun, ctx_per_agent: int) -> tuple[str, tuple[str, ...]]:
    plan = make_plan(SHAPE, resolve_profile("16gb", {}), PlanRequest(agents=2, ctx_per_agent=ctx_per_agent))
    passes = [mode_pass.records for mode in (run.sequential, run.parallel) for mode_pass in mode.passes]
    verdict = client_options_verdict(plan, passes)
    return verdict.outcome, verdict.evidence


def check_every_request_was_timed(run: ScenarioRun) -> None:
    for mode in (run.sequential, run.parallel):
        assert not mode.errors, mode.errors
        records = mode.records
        assert sorted(record.label for record in records) == ["coder", "reviewer", "writer"]
        assert all(record.ok and record.ttft is not None and record.n_out > 0 for record in records)
        assert all(record.client_options == {"num_ctx": 8192, "num_predict": 192, "temperature": 0.2}
                   for record in records)
    assert run.parallel.passes[0].unrecorded == {}


def test_the_seed_graph_runs_as_written_on_the_embedded_llama_server(tiny_model: Path, tmp_path: Path) -> None:
    # 2048 tokens a slot: the reviewer reads 400 characters of each of the others' answers (random tokens, which
    # detokenize to long pieces) under its instructions, more than the shared tiny server's 256
    with LlamaServer(ServerConfig(parallel=2, ctx_per_agent=2048), tiny_model,
                     EngineOptions(log_dir=tmp_path, startup_timeout_s=120,
                                   env={**os.environ, **ONE_THREAD})) as server:
        run = run_on_process_loop(run_both(server.url, load_scenario(SEED), rounds=1))
    check_every_request_was_timed(run)
    assert run.width == 2  # the coder and the writer at once
    assert verdict_for(run, 8192)[0] == "pass"
    outcome, evidence = verdict_for(run, 4096)
    assert outcome == "fail" and evidence[0].endswith("num_ctx 8192, the plan sets 4096")
    assert "2 x 8192 = 16,384 tokens of KV" in evidence[1]


@pytest.mark.parametrize("ollama", ["double", "real"])
def test_the_seed_graph_runs_as_written_on_ollama(ollama: str, tiny_model: Path, tmp_path: Path) -> None:
    binary = launcher(tmp_path) if ollama == "double" else shutil.which("ollama")
    if binary is None:
        pytest.skip("no ollama on PATH: the real-Ollama run of this test needs one")
    # planned as the app asks (num_ctx 8192), so nothing reloads; the tiny model is trained for 8192
    server = OllamaServer(ServerConfig(parallel=2, ctx_per_agent=8192), tiny_model, "tiny-vramcap",
                          fit_margin_mib=1024, binary=Path(binary), log_dir=tmp_path / "logs", startup_timeout_s=120,
                          env={"OLLAMA_MODELS": str(tmp_path / "store"), "LLAMA_ARG_REPACK": "0", **ONE_THREAD})
    with server:
        run = run_on_process_loop(run_both(server.url, load_scenario(SEED), model=server.request_model, rounds=1))
        assert not server.evidence().reloads
    check_every_request_was_timed(run)
    records = run.sequential.records + run.parallel.records
    assert all(record.engine_metrics and "eval_count" in record.engine_metrics for record in records)
    assert verdict_for(run, 8192)[0] == "pass"
