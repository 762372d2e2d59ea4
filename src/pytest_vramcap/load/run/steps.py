"""Run a scenario of steps against a server, sequentially and in parallel.

Super-step semantics (as in LangGraph): every agent of a step sees the state as
it was when the step began; the step's outputs merge into the state only when
all of its agents are done. Parallel mode sends a step's agents at once;
sequential mode sends them one by one. Same prompts, same fixed output lengths
(``ignore_eos`` + ``max_tokens``, temperature 0, fixed seed), so the wall-time
ratio is the parallel speedup. Rounds, passes and the speedup: :mod:`.runs`.
:func:`run_both` runs a scenario that names a graph through :mod:`.graphs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...types import RUN_MODES, RunMode
from ..measure.client import ChatClient, ChatRequest
from ..measure.record import RequestError, RequestRecord
from ..proxy.router import ModelRoute
from ..scenario.graph_source import Builder
from ..scenario.schema import Agent, Scenario, render_prompt
from ..scenario.text import synthetic_text
from .graphs import run_graph_both
from .rounds import ModeResult, ModeRuns, ScenarioRun, pass_marker, run_rounds, runner_request_fields, warm_up

__all__ = ["ModeResult", "ModeRuns", "ScenarioRun", "next_turn", "run_both", "run_scenario",
           "scenario_request", "system_prompt"]


def system_prompt(scenario: Scenario, agent: Agent, marker: str = "") -> str:
    """The agent's system message: the pass marker, the shared synthetic system prompt, the shared prefix, its
    own system text (the shared parts first, so the agents of a pass share one cacheable prefix)."""
    shared = synthetic_text(scenario.system_tokens, f"{scenario.name}.system") if scenario.system_tokens else ""
    return "\n".join(part for part in (marker, shared, scenario.shared_prefix, agent.system or "") if part)


def scenario_request(scenario: Scenario, step: str, agent: Agent, state: dict[str, Any], seed: int,
                     prompt_cache: bool = False, marker: str = "") -> ChatRequest:
    """The first request ``agent`` of ``step`` sends given the state so far (shared by every runner of scenarios)."""
    system = system_prompt(scenario, agent, marker)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": render_prompt(agent.prompt, state, scenario.max_ref_chars)})
    return ChatRequest(messages, agent.max_tokens, label=f"{step}.{agent.role}", seed=seed,
                       extra=runner_request_fields(prompt_cache))


def next_turn(request: ChatRequest, answer: str, step: str, agent: Agent, turn: int) -> ChatRequest:
    """The request of ``turn`` (from 2): the conversation so far, the answer, and a tool result of its own."""
    result = synthetic_text(agent.turn_tokens, f"{step}.{agent.role}.{turn}")
    messages = [*request.messages, {"role": "assistant", "content": answer}, {"role": "user", "content": result}]
    return replace(request, messages=messages)


Clients = Mapping[str | None, ChatClient]
"""A client per model role; the key None is the model of agents that name none (the first)."""


@dataclass
class _Conversation:
    """What one agent's turns left: its chat and retrieval records, its last answer, the failure that ended it."""

    records: list[RequestRecord] = field(default_factory=list)
    embeddings: list[RequestRecord] = field(default_factory=list)
    answer: str = ""
    failure: RequestError | None = None


async def _converse(clients: Clients, first: ChatRequest, step: str, agent: Agent) -> _Conversation:
    """Every turn of one agent (each after a retrieval, when the agent retrieves)."""
    done = _Conversation()
    request = first
    for turn in range(1, agent.turns + 1):
        if turn > 1:
            request = next_turn(request, done.answer, step, agent, turn)
        try:
            if agent.retrieve is not None:
                query = synthetic_text(agent.retrieve_tokens, f"{step}.{agent.role}.query.{turn}")
                retrieval = await clients[agent.retrieve].embed(query, label=f"{request.label}.retrieve")
                done.embeddings.append(_on(retrieval, agent.retrieve))
            done.records.append(_on(await clients[agent.model].chat(request), agent.model))
        except RequestError as exc:
            if exc.record is not None:  # the client attaches one to every failure
                if exc.record.endpoint == "embeddings":
                    done.embeddings.append(_on(exc.record, agent.retrieve))
                else:
                    done.records.append(_on(exc.record, agent.model))
            done.answer, done.failure = "", exc
            return done
        done.answer = done.records[-1].text
    return done


def _on(record: RequestRecord, role: str | None) -> RequestRecord:
    record.model = role
    return record


async def run_scenario(clients: Clients | ChatClient, scenario: Scenario, mode: RunMode, seed: int = 42,
                       prompt_cache: bool = False) -> ModeResult:
    """One pass over the scenario in ``mode`` ("sequential" or "parallel"): in parallel, a step's agents hold
    their conversations at once; in sequence, one agent's whole conversation after another's. ``clients``: one
    client (one model), or one per model role."""
    if mode not in RUN_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if isinstance(clients, ChatClient):
        clients = {None: clients}
    marker = pass_marker() if prompt_cache else ""
    state: dict[str, Any] = dict(scenario.inputs)
    records: list[RequestRecord] = []
    embeddings: list[RequestRecord] = []
    errors: list[str] = []
    step_walls: dict[str, float] = {}
    start = time.monotonic()
    for step in scenario.steps:
        conversations = [_converse(clients, scenario_request(scenario, step.name, agent, state, seed, prompt_cache,
                                                             marker), step.name, agent) for agent in step.agents]
        step_start = time.monotonic()
        if mode == "parallel":
            outcomes = await asyncio.gather(*conversations)
        else:
            outcomes = [await conversation for conversation in conversations]
        step_walls[step.name] = time.monotonic() - step_start
        outputs = {}
        for agent, done in zip(step.agents, outcomes, strict=True):
            records.extend(done.records)
            embeddings.extend(done.embeddings)
            if done.failure is not None:
                turn = f" (turn {max(len(done.records), len(done.embeddings))})" if agent.turns > 1 else ""
                errors.append(f"{step.name}.{agent.role}{turn}: {done.failure}")
            outputs[agent.role] = done.answer
        state[step.name] = outputs  # the step's outputs merge only after all its agents finished
        if errors:
            break  # later steps would read missing outputs
    return ModeResult(mode, time.monotonic() - start, step_walls, records, errors, started=start,
                      embeddings=embeddings)


async def run_both(url: str, scenario: Scenario, *, build: Builder | None = None, model: str | None = None,
                   warmup: bool = True, read_timeout_s: float = 300.0, rounds: int = 1,
                   prompt_cache: bool = False, routes: Sequence[ModelRoute] = (),
                   settled: Callable[[ScenarioRun], bool] | None = None) -> ScenarioRun:
    """``rounds`` of a sequential and a parallel pass of any scenario, after a warm-up request.

    With several models, ``routes`` says where each role's requests go (its server and the model they name);
    without, ``url`` and ``model`` serve everything. A scenario of steps runs on one client of ours per model;
    one that names a graph (or any scenario given ``build``, the graph's builder) runs the user's graph
    through the recording proxy (:mod:`.graphs`), which sends each request to the model it names.
    """
    if scenario.graph is not None or build is not None:
        return await run_graph_both(url, scenario, build=build, model=model, warmup=warmup,
                                    read_timeout_s=read_timeout_s, rounds=rounds, prompt_cache=prompt_cache,
                                    routes=routes, settled=settled)
    endpoints = {route.role or "": (route.upstream, route.model) for route in routes} or {"": (url, model)}
    async with contextlib.AsyncExitStack() as stack:
        by_role = {role: await stack.enter_async_context(ChatClient(
            server, model=served, read_timeout_s=read_timeout_s,
            total_timeout_s=max(600.0, read_timeout_s))) for role, (server, served) in endpoints.items()}
        clients: dict[str | None, ChatClient] = {role: client for role, client in by_role.items()}
        clients[None] = next(iter(by_role.values()))
        if warmup:
            retrieval_only = scenario.retrieval_roles()  # embedding models: no chat to warm them up with
            for role, client in by_role.items():
                if role not in retrieval_only:
                    await warm_up(client)
        return await run_rounds(scenario, lambda mode: run_scenario(clients, scenario, mode,
                                                                     prompt_cache=prompt_cache), rounds, prompt_cache,
                                settled)
