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
import time
from dataclasses import replace
from typing import Any

from ...types import RUN_MODES, RunMode
from ..measure.client import ChatClient, ChatRequest
from ..measure.record import RequestError, RequestRecord
from ..scenario.graph_source import Builder
from ..scenario.schema import Agent, Scenario, render_prompt
from ..scenario.text import synthetic_text
from .graphs import run_graph_both
from .rounds import ModeResult, ModeRuns, ScenarioRun, pass_marker, run_rounds, runner_request_fields, warm_up

__all__ = ["ModeResult", "ModeRuns", "ScenarioRun", "next_turn", "run_both", "run_scenario", "scenario_request",
           "system_prompt"]


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


async def _converse(client: ChatClient, first: ChatRequest, step: str,
                    agent: Agent) -> tuple[list[RequestRecord], str, RequestError | None]:
    """Every turn of one agent: its records, its last answer, and the failure that ended it early, if one did."""
    records: list[RequestRecord] = []
    request, answer = first, ""
    for turn in range(1, agent.turns + 1):
        if turn > 1:
            request = next_turn(request, answer, step, agent, turn)
        try:
            record = await client.chat(request)
        except RequestError as exc:
            if exc.record is not None:  # the client attaches one to every failure
                records.append(exc.record)
            return records, "", exc
        records.append(record)
        answer = record.text
    return records, answer, None


async def run_scenario(client: ChatClient, scenario: Scenario, mode: RunMode, seed: int = 42,
                       prompt_cache: bool = False) -> ModeResult:
    """One pass over the scenario in ``mode`` ("sequential" or "parallel"): in parallel, a step's agents hold
    their conversations at once; in sequence, one agent's whole conversation after another's."""
    if mode not in RUN_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    marker = pass_marker() if prompt_cache else ""
    state: dict[str, Any] = dict(scenario.inputs)
    records: list[RequestRecord] = []
    errors: list[str] = []
    step_walls: dict[str, float] = {}
    start = time.monotonic()
    for step in scenario.steps:
        conversations = [_converse(client, scenario_request(scenario, step.name, agent, state, seed, prompt_cache,
                                                            marker), step.name, agent) for agent in step.agents]
        step_start = time.monotonic()
        if mode == "parallel":
            outcomes = await asyncio.gather(*conversations)
        else:
            outcomes = [await conversation for conversation in conversations]
        step_walls[step.name] = time.monotonic() - step_start
        outputs = {}
        for agent, (agent_records, answer, failure) in zip(step.agents, outcomes, strict=True):
            records.extend(agent_records)
            if failure is not None:
                turn = f" (turn {len(agent_records)})" if agent.turns > 1 else ""
                errors.append(f"{step.name}.{agent.role}{turn}: {failure}")
            outputs[agent.role] = answer
        state[step.name] = outputs  # the step's outputs merge only after all its agents finished
        if errors:
            break  # later steps would read missing outputs
    return ModeResult(mode, time.monotonic() - start, step_walls, records, errors, started=start)


async def run_both(url: str, scenario: Scenario, *, build: Builder | None = None, model: str | None = None,
                   warmup: bool = True, read_timeout_s: float = 300.0, rounds: int = 1,
                   prompt_cache: bool = False) -> ScenarioRun:
    """``rounds`` of a sequential and a parallel pass of any scenario, after a warm-up request.

    A scenario of steps runs on one client of ours; one that names a graph (or any
    scenario given ``build``, the graph's builder) runs the user's graph through the
    recording proxy (:mod:`.graphs`).
    """
    if scenario.graph is not None or build is not None:
        return await run_graph_both(url, scenario, build=build, model=model, warmup=warmup,
                                    read_timeout_s=read_timeout_s, rounds=rounds, prompt_cache=prompt_cache)
    async with ChatClient(url, model=model, read_timeout_s=read_timeout_s,
                          total_timeout_s=max(600.0, read_timeout_s)) as client:
        if warmup:
            await warm_up(client)
        return await run_rounds(scenario, lambda mode: run_scenario(client, scenario, mode, prompt_cache=prompt_cache),
                                rounds, prompt_cache)
