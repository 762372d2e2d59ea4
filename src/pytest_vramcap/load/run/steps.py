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
from typing import Any

from ...types import RUN_MODES, RunMode
from ..measure.client import ChatClient, ChatRequest
from ..measure.record import RequestError, RequestRecord
from ..scenario.graph_source import Builder
from ..scenario.schema import Agent, Scenario, render_prompt
from .graphs import run_graph_both
from .rounds import RUNNER_REQUEST_FIELDS, ModeResult, ModeRuns, ScenarioRun, run_rounds, warm_up

__all__ = ["ModeResult", "ModeRuns", "ScenarioRun", "run_both", "run_scenario", "scenario_request"]


def scenario_request(scenario: Scenario, step: str, agent: Agent, state: dict[str, Any], seed: int) -> ChatRequest:
    """The request ``agent`` of ``step`` sends given the state so far (shared by every runner of scenarios)."""
    system = "\n".join(part for part in (scenario.shared_prefix, agent.system or "") if part)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": render_prompt(agent.prompt, state, scenario.max_ref_chars)})
    return ChatRequest(messages, agent.max_tokens, label=f"{step}.{agent.role}", seed=seed,
                       extra=dict(RUNNER_REQUEST_FIELDS))


async def run_scenario(client: ChatClient, scenario: Scenario, mode: RunMode, seed: int = 42) -> ModeResult:
    """One pass over the scenario in ``mode`` ("sequential" or "parallel")."""
    if mode not in RUN_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    state: dict[str, Any] = dict(scenario.inputs)
    records: list[RequestRecord] = []
    errors: list[str] = []
    step_walls: dict[str, float] = {}
    start = time.monotonic()
    for step in scenario.steps:
        requests = [scenario_request(scenario, step.name, agent, state, seed) for agent in step.agents]
        step_start = time.monotonic()
        if mode == "parallel":
            outcomes = await asyncio.gather(*(client.chat(r) for r in requests), return_exceptions=True)
        else:
            outcomes = []
            for request in requests:
                try:
                    outcomes.append(await client.chat(request))
                except RequestError as exc:
                    outcomes.append(exc)
        step_walls[step.name] = time.monotonic() - step_start
        outputs = {}
        for agent, outcome in zip(step.agents, outcomes, strict=True):
            if isinstance(outcome, RequestError):
                errors.append(f"{step.name}.{agent.role}: {outcome}")
                if outcome.record is not None:  # the client attaches one to every failure
                    records.append(outcome.record)
                outputs[agent.role] = ""
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                records.append(outcome)
                outputs[agent.role] = outcome.text
        state[step.name] = outputs  # the step's outputs merge only after all its agents finished
        if errors:
            break  # later steps would read missing outputs
    return ModeResult(mode, time.monotonic() - start, step_walls, records, errors, started=start)


async def run_both(url: str, scenario: Scenario, *, build: Builder | None = None, model: str | None = None,
                   warmup: bool = True, read_timeout_s: float = 300.0, rounds: int = 1) -> ScenarioRun:
    """``rounds`` of a sequential and a parallel pass of any scenario, after a warm-up request.

    A scenario of steps runs on one client of ours; one that names a graph (or any
    scenario given ``build``, the graph's builder) runs the user's graph through the
    recording proxy (:mod:`.graphs`).
    """
    if scenario.graph is not None or build is not None:
        return await run_graph_both(url, scenario, build=build, model=model, warmup=warmup,
                                    read_timeout_s=read_timeout_s, rounds=rounds)
    async with ChatClient(url, model=model, read_timeout_s=read_timeout_s,
                          total_timeout_s=max(600.0, read_timeout_s)) as client:
        if warmup:
            await warm_up(client)
        return await run_rounds(scenario, lambda mode: run_scenario(client, scenario, mode), rounds)
