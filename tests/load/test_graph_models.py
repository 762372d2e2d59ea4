"""A graph whose module-level clients name two models (a ChatOllama and an OllamaEmbeddings, as the LangChain
docs write them) run on two real llama-servers: the recording proxy sends each request to the model it names, and
records the embeddings beside the chats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.load.proxy.router import ModelRoute
from pytest_vramcap.load.run.apps import run_on_process_loop
from pytest_vramcap.load.run.steps import run_both
from pytest_vramcap.load.scenario.schema import load_scenario
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import needs_llama_server

pytest.importorskip("langchain_ollama", reason="langchain-ollama comes with the graph extra (dev installs it)")
pytestmark = needs_llama_server

RAG_GRAPH = '''
from typing import TypedDict

from langchain_ollama import ChatOllama, OllamaEmbeddings
from langgraph.graph import END, START, StateGraph

LLM = ChatOllama(model="chat-model", num_predict=8, temperature=0)
EMBED = OllamaEmbeddings(model="embed")


class State(TypedDict):
    topic: str
    answer: str


async def answer(state):
    await EMBED.aembed_query(state["topic"])
    reply = await LLM.ainvoke(f"One line on {state['topic']}.")
    return {"answer": reply.content}


graph = StateGraph(State)
graph.add_node("answer", answer)
graph.add_edge(START, "answer")
graph.add_edge("answer", END)
graph = graph.compile()
'''


@pytest.fixture(scope="module")
def two_servers(tiny_model: Path, tiny_embed_model: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("two-servers")
    chat = LlamaServer(ServerConfig(parallel=2, ctx_per_agent=256), tiny_model,
                       EngineOptions(log_dir=logs, startup_timeout_s=120))
    embed = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256, embedding=True), tiny_embed_model,
                        EngineOptions(log_dir=logs, startup_timeout_s=120))
    with chat, embed:
        yield chat.url, embed.url


def test_each_request_goes_to_the_model_it_names(two_servers: tuple[str, str], tmp_path: Path) -> None:
    chat_url, embed_url = two_servers
    (tmp_path / "rag_graph.py").write_text(RAG_GRAPH)
    (tmp_path / "rag.yaml").write_text("graph: rag_graph.py:graph\ninput: {topic: GPUs}\n")
    # The chat model is named as given to vramcap ("chat-model"), the embedding model by its role.
    routes = [ModelRoute(chat_url, None, "chat", frozenset({"chat", "chat-model"})),
              ModelRoute(embed_url, None, "embed", frozenset({"embed"}))]
    run = run_on_process_loop(run_both(chat_url, load_scenario(tmp_path / "rag.yaml"), routes=routes))
    assert run.sequential.ok and run.parallel.ok, run.sequential.errors + run.parallel.errors
    for result in run.sequential.passes + run.parallel.passes:
        assert [(r.endpoint, r.model) for r in result.records] == [("chat", "chat")]
        # The chat server has no --embeddings: an embedding that reached it would have failed.
        assert [(r.endpoint, r.model) for r in result.embeddings] == [("embeddings", "embed")]
        assert all(r.ok and r.prompt_tokens and r.e2e for r in result.embeddings)
        assert result.unrecorded == {}
    embed_s = run.parallel.summary().embed_s
    assert embed_s is not None and embed_s.n == 1
