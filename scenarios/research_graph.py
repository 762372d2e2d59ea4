"""The research fan-out (research-fanout.yaml) as a real LangGraph graph: what a user's own graph looks like.

Four researchers are fanned out with ``Send``, one per angle, and a synthesizer reads
the start of their notes. ``build(base_url)`` is what a scenario's ``graph:`` names:
vramcap calls it with the base URL of its recording proxy (ending in ``/v1``) and
invokes the compiled graph with ``max_concurrency=1`` (sequential) and without a
limit (parallel). Needs the ``graph`` extra: ``pip install 'pytest-vramcap[graph]'``.

Two things make the wall times comparable, as vramcap's own scenarios do: fixed
output lengths (``max_tokens`` with ``ignore_eos``, a llama-server field that Ollama
ignores), temperature 0 and a seed. ``max_tokens`` goes in ``extra_body`` too:
langchain-openai sends ``max_tokens=`` as ``max_completion_tokens``, which Ollama's ``/v1``
drops (the ``output_budget`` verdict says so), so on Ollama only the copy bounds the
lengths (there ``ignore_eos`` is dropped: an answer may still end early). The ``X-Vramcap-Label`` header names each
agent in the report and in Locust's tables; it is not sent on to the engine.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

ANGLES = ("cost", "latency", "privacy", "operations")
SYSTEM = "Research agent. Short notes."


class Research(TypedDict):
    question: str
    notes: Annotated[list[str], operator.add]  # each researcher's note is appended
    answer: str


class Angle(TypedDict):
    question: str
    angle: str


def build(base_url: str) -> Any:
    def agent(label: str, max_tokens: int) -> ChatOpenAI:
        return ChatOpenAI(base_url=base_url, api_key="unused", model="local", temperature=0, seed=42,
                          max_tokens=max_tokens, extra_body={"ignore_eos": True, "max_tokens": max_tokens},
                          default_headers={"X-Vramcap-Label": label})

    researcher, synthesizer = agent("research", 96), agent("synthesis", 16)

    def fan_out(state: Research) -> list[Send]:
        return [Send("research", {"question": state["question"], "angle": angle}) for angle in ANGLES]

    async def research(state: Angle) -> dict[str, Any]:
        reply = await researcher.ainvoke([("system", SYSTEM),
                                          ("user", f"{state['angle'].capitalize()} angle: {state['question']}")])
        return {"notes": [reply.content]}

    async def synthesize(state: Research) -> dict[str, Any]:
        notes = " ".join(str(note)[:100] for note in state["notes"])
        reply = await synthesizer.ainvoke([("system", SYSTEM), ("user", f"Notes: {notes}. Conclude.")])
        return {"answer": reply.content}

    graph = StateGraph(Research)
    graph.add_node("research", research)
    graph.add_node("synthesize", synthesize)
    graph.add_conditional_edges(START, fan_out, ["research"])
    graph.add_edge("research", "synthesize")
    graph.add_edge("synthesize", END)
    return graph.compile()
