"""The seed's micro-agents as people write them from the Ollama and LangChain docs, run by vramcap unchanged.

A coder and a writer work on the task at once (both edges leave START), then a reviewer
reads both. The chat models are made at module level with ``ChatOllama`` and the graph is
compiled at module level, as in the tutorials: nothing here knows about vramcap. vramcap
imports this file with ``OLLAMA_HOST`` pointing at its recording proxy, so every request is
timed; on the embedded llama-server the proxy translates Ollama's ``/api/chat`` the way
Ollama's own runner does, and on Ollama it relays it.

``num_ctx=8192`` is the context the app asks Ollama for: the ``client_options`` verdict
compares it with the plan (a real Ollama reloads the model when they differ), so the
scenario passes with the default plan and fails with ``--vramcap-ctx 4096``.

The ``X-Vramcap-Label`` header (``client_kwargs``) only names each agent in the report;
without it every request is labelled ``chat``. Needs the graph extra
(``pip install 'pytest-vramcap[graph]'``: langgraph and langchain-ollama).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_ollama import ChatOllama
from langgraph.graph import END, START, StateGraph


def agent(label: str) -> ChatOllama:
    return ChatOllama(model="qwen2.5:14b", temperature=0.2, num_ctx=8192, num_predict=192,
                      client_kwargs={"headers": {"X-Vramcap-Label": label}})


coder, writer, reviewer = agent("coder"), agent("writer"), agent("reviewer")


class Task(TypedDict, total=False):
    task: str
    code: str
    docs: str
    review: str


async def write_code(state: Task) -> dict[str, Any]:
    reply = await coder.ainvoke([("system", "You write Python."), ("user", state["task"])])
    return {"code": reply.content}


async def write_docs(state: Task) -> dict[str, Any]:
    reply = await writer.ainvoke([("system", "You write user docs."), ("user", state["task"])])
    return {"docs": reply.content}


async def review(state: Task) -> dict[str, Any]:
    reply = await reviewer.ainvoke([("system", "You review code and docs."),
                                    ("user", f"Code: {str(state['code'])[:200]}\nDocs: {str(state['docs'])[:200]}")])
    return {"review": reply.content}


builder = StateGraph(Task)
builder.add_node("coder", write_code)
builder.add_node("writer", write_docs)
builder.add_node("reviewer", review)
builder.add_edge(START, "coder")
builder.add_edge(START, "writer")
builder.add_edge(["coder", "writer"], "reviewer")
builder.add_edge("reviewer", END)
graph = builder.compile()
