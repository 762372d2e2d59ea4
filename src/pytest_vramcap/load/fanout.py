"""Run a scenario against a server, sequentially and in parallel.

Super-step semantics (as in LangGraph): every agent of a step sees the state as
it was when the step began; the step's outputs merge into the state only when
all of its agents are done. Parallel mode sends a step's agents at once;
sequential mode sends them one by one. Same prompts, same fixed output lengths
(``ignore_eos`` + ``max_tokens``, temperature 0, fixed seed), so the wall-time
ratio is the parallel speedup.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import RequestError
from ..types import RUN_MODES, RunMode
from .client import ChatClient, ChatRequest, RequestRecord
from .metrics import Summary, summarize
from .scenarios import Agent, Scenario, render_prompt

__all__ = ["ModeResult", "ScenarioRun", "run_both", "run_scenario"]


@dataclass
class ModeResult:
    """One pass over a scenario: its wall time, per-step wall times, one record per request."""

    mode: RunMode
    wall_s: float
    step_walls_s: dict[str, float]
    records: list[RequestRecord]
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> Summary:
        return summarize(self.records, self.wall_s)


@dataclass
class ScenarioRun:
    """The sequential and the parallel pass of one scenario, on the same server."""

    scenario: Scenario
    sequential: ModeResult
    parallel: ModeResult

    @property
    def speedup(self) -> float | None:
        if not (self.sequential.ok and self.parallel.ok) or self.parallel.wall_s <= 0:
            return None
        return self.sequential.wall_s / self.parallel.wall_s


def _request(scenario: Scenario, step: str, agent: Agent, state: dict[str, Any], seed: int) -> ChatRequest:
    system = "\n".join(part for part in (scenario.shared_prefix, agent.system or "") if part)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": render_prompt(agent.prompt, state, scenario.max_ref_chars)})
    # No prompt-cache reuse: the parallel pass must not get the sequential pass's prefill for free.
    return ChatRequest(messages, agent.max_tokens, label=f"{step}.{agent.role}", seed=seed,
                       extra={"cache_prompt": False})


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
        requests = [_request(scenario, step.name, agent, state, seed) for agent in step.agents]
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
    return ModeResult(mode, time.monotonic() - start, step_walls, records, errors)


async def run_both(url: str, scenario: Scenario, *, model: str | None = None, warmup: bool = True,
                   read_timeout_s: float = 300.0) -> ScenarioRun:
    """Sequential first, then parallel, on one client; a short warm-up request first."""
    async with ChatClient(url, model=model, read_timeout_s=read_timeout_s,
                          total_timeout_s=max(600.0, read_timeout_s)) as client:
        if warmup:
            try:
                await client.chat(ChatRequest([{"role": "user", "content": "warm up"}], 4, label="warmup"))
            except RequestError:
                pass  # the real runs will report it
        sequential = await run_scenario(client, scenario, "sequential")
        parallel = await run_scenario(client, scenario, "parallel")
    return ScenarioRun(scenario, sequential, parallel)
