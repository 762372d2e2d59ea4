"""What the engine does not honour: the output limit an app asks for, through the recording proxy.

langchain-openai sends ``ChatOpenAI(max_tokens=48)`` as ``max_completion_tokens``: llama-server
reads it, Ollama's ``/v1`` drops it (the Ollama double, tests/ollama_double, follows
openai/openai.go: no Ollama can be installed here). The same module-level app passes
``output_budget`` on the embedded llama-server and fails it on Ollama, naming the field.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_vramcap.engines.honoured import audit, dropped_fields, output_limit, would_drop
from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.engines.ollama import OllamaServer
from pytest_vramcap.load.measure.record import RequestRecord
from pytest_vramcap.load.run.apps import run_on_process_loop
from pytest_vramcap.load.run.rounds import ScenarioRun
from pytest_vramcap.load.run.steps import run_both
from pytest_vramcap.load.scenario.schema import load_scenario
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.report.output_budget import output_budget_verdict
from pytest_vramcap.report.verdict import Verdict
from tests.factories import record
from tests.helpers import needs_llama_server
from tests.load.test_seed_agents import ONE_THREAD
from tests.ollama_double import launcher

pytest.importorskip("langchain_openai", reason="the app needs the graph extra (dev installs it)")

APP = '''
from typing import TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

llm = ChatOpenAI(model="gpt-4o-mini", max_tokens=48, temperature=0)  # module level, as the tutorials write it


class State(TypedDict, total=False):
    topic: str
    a: str
    b: str


async def first(state):
    return {"a": (await llm.ainvoke("Write about " + state["topic"])).content}


async def second(state):
    return {"b": (await llm.ainvoke("Summarize " + state["topic"])).content}


builder = StateGraph(State)
builder.add_node("first", first)
builder.add_node("second", second)
builder.add_edge(START, "first")
builder.add_edge(START, "second")
builder.add_edge(["first", "second"], END)
graph = builder.compile()
'''


def run_app(tmp_path: Path, url: str, model: str | None = None) -> ScenarioRun:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "s.yaml").write_text("graph: app.py:graph\ninput: {topic: GPUs}\n")
    return run_on_process_loop(run_both(url, load_scenario(tmp_path / "s.yaml"), model=model, rounds=1))


def judged(run: ScenarioRun) -> Verdict:
    return output_budget_verdict([p.records for mode in (run.sequential, run.parallel) for p in mode.passes])


@needs_llama_server
def test_a_module_level_chatopenai_keeps_its_limit_on_llama_server(tiny_model: Path, tmp_path: Path) -> None:
    with LlamaServer(ServerConfig(parallel=2, ctx_per_agent=256), tiny_model,
                     EngineOptions(log_dir=tmp_path, startup_timeout_s=120,
                                   env={**os.environ, **ONE_THREAD})) as server:
        run = run_app(tmp_path, server.url)
    records = run.sequential.records + run.parallel.records
    assert len(records) == 4 and all(r.n_out <= 48 and r.audit is not None for r in records)
    assert all(r.audit.limit == ("max_completion_tokens", 48) and r.audit.engine == "llama-server"
               for r in records if r.audit is not None)
    verdict = judged(run)
    assert verdict.outcome == "pass"
    assert verdict.evidence == ("chat: Ollama would drop max_completion_tokens",)


@needs_llama_server
def test_the_same_app_runs_away_on_ollama_and_the_verdict_names_the_field(tiny_model: Path, tmp_path: Path) -> None:
    server = OllamaServer(ServerConfig(parallel=2, ctx_per_agent=256), tiny_model, "tiny-vramcap",
                          fit_margin_mib=1024, binary=launcher(tmp_path), log_dir=tmp_path / "logs",
                          startup_timeout_s=120,
                          env={"OLLAMA_MODELS": str(tmp_path / "store"), "LLAMA_ARG_REPACK": "0", **ONE_THREAD})
    with server:
        run = run_app(tmp_path, server.url, model=server.request_model)
    records = run.sequential.records + run.parallel.records
    assert all(r.audit is not None and r.audit.dropped == ("max_completion_tokens",) for r in records)
    assert max(r.n_out for r in records) > 48  # nothing bounded the answers but the context
    verdict = judged(run)
    assert verdict.outcome == "fail"
    assert "asked max_completion_tokens 48, generated" in verdict.evidence[0]
    assert "ollama drops max_completion_tokens: send max_tokens" in verdict.evidence[0]
    assert verdict.evidence[1] == "chat: ollama dropped max_completion_tokens x4"


def counted(n_out: int, body: dict[str, object], engine: str = "ollama") -> RequestRecord:
    made = record("writer", 0.1, 1.0, n_out)
    made.n_out_source = "usage"
    made.audit = audit(engine, "chat/completions", body)  # type: ignore[arg-type]
    return made


def test_a_limit_the_engine_reads_passes_and_one_without_usage_is_not_judged() -> None:
    within = counted(48, {"model": "m", "max_tokens": 48, "max_completion_tokens": 48, "ignore_eos": True})
    chunks = counted(400, {"model": "m", "max_completion_tokens": 48})
    chunks.n_out_source = "chunks"  # a chunk count is not a token count
    verdict = output_budget_verdict([[within, chunks]])
    assert verdict.outcome == "pass"
    assert verdict.evidence == ("writer: ollama dropped ignore_eos x1, max_completion_tokens x2",)


def test_no_request_through_the_proxy_is_not_applicable() -> None:
    assert output_budget_verdict([[record("a", 0.1, 1.0)]]).outcome == "n/a"


@pytest.mark.parametrize("engine, route, body, limit", [
    ("llama-server", "chat/completions", {"max_tokens": 16, "max_completion_tokens": 64},
     ("max_completion_tokens", 64)),  # n_predict, then its aliases in server-schema.cpp's order
    ("ollama", "chat/completions", {"max_tokens": 16, "max_completion_tokens": 64}, ("max_tokens", 16)),
    ("ollama", "chat/completions", {"max_completion_tokens": 64, "n_predict": 32}, ("n_predict", 32)),  # none read
    ("llama-server", "completions", {"n_predict": 5}, ("n_predict", 5)),
    ("openai", "chat/completions", {"max_tokens": -1}, None),
    ("ollama", "api/chat", {"options": {"num_predict": 64}}, ("num_predict", 64)),
    ("llama-server", "api/generate", {"options": {"num_predict": -1}}, None),
])
def test_the_output_limit_is_the_one_the_engine_uses(engine: str, route: str, body: dict[str, object],
                                                     limit: tuple[str, int] | None) -> None:
    assert output_limit(route, body, engine) == limit  # type: ignore[arg-type]


def test_the_engine_going_past_a_limit_it_reads_is_named_and_a_limit_of_0_may_make_one_token() -> None:
    both = counted(40, {"max_tokens": 16, "max_completion_tokens": 64}, engine="llama-server")
    assert output_budget_verdict([[both]]).outcome == "pass"  # llama-server used the 64
    zero = counted(1, {"max_tokens": 0}, engine="llama-server")
    assert output_budget_verdict([[zero]]).outcome == "pass"  # it checks the budget after a token
    past = counted(80, {"max_tokens": 16}, engine="llama-server")
    verdict = output_budget_verdict([[past]])
    assert verdict.outcome == "fail" and "llama-server reads max_tokens" in verdict.evidence[0]


def test_what_each_engine_drops() -> None:
    body = {"model": "m", "messages": [], "max_completion_tokens": 48, "ignore_eos": True, "top_k": 3}
    assert dropped_fields("ollama", "chat/completions", body) == ("max_completion_tokens", "ignore_eos", "top_k")
    assert dropped_fields("llama-server", "chat/completions", body) == ()
    assert dropped_fields("openai", "chat/completions", body) == ()  # another server: not judged
    native = {"model": "m", "messages": [], "options": {"num_predict": 3, "mirostat": 1}, "truncate": False}
    assert dropped_fields("ollama", "api/chat", native) == ("options.mirostat",)
    assert dropped_fields("llama-server", "api/chat", native) == ("truncate", "options.mirostat")
    assert dropped_fields("llama-server", "chat/completions", {"thinking_budget_tokens": 64}) == ()
    assert would_drop("ollama", "api/chat", ("model", "options.mirostat", "options.num_ctx")) == ("options.mirostat",)
