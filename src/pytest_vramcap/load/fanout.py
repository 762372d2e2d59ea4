"""Run a scenario against a server, sequentially and in parallel.

Super-step semantics (as in LangGraph): every agent of a step sees the state as
it was when the step began; the step's outputs merge into the state only when
all of its agents are done. Parallel mode sends a step's agents at once;
sequential mode sends them one by one. Same prompts, same fixed output lengths
(``ignore_eos`` + ``max_tokens``, temperature 0, fixed seed), so the wall-time
ratio is the parallel speedup.

A run repeats both passes in rounds whose order alternates (sequential first,
then parallel first, ...), so drift on a busy machine lands on both sides; the
speedup is the median of the rounds' ratios, reported with their range.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import RequestError
from ..types import RUN_MODES, RunMode
from .client import ChatClient, ChatRequest, RequestRecord
from .metrics import Summary, summarize
from .scenarios import Agent, Scenario, render_prompt

__all__ = ["ModeResult", "ModeRuns", "ScenarioRun", "run_both", "run_scenario", "scenario_request"]

_ORDERS: tuple[tuple[RunMode, RunMode], ...] = (("sequential", "parallel"), ("parallel", "sequential"))


@dataclass
class ModeResult:
    """One pass over a scenario: its wall time, per-step wall times, one record per request."""

    mode: RunMode
    wall_s: float
    step_walls_s: dict[str, float]
    records: list[RequestRecord]
    errors: list[str] = field(default_factory=list)
    started: float | None = None
    """When the pass began (``time.monotonic()``): the origin of its requests' timeline."""

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def origin(self) -> float:
        """The pass's start, else its first send: what request times are measured from."""
        if self.started is not None:
            return self.started
        return min((record.t_send for record in self.records), default=0.0)

    def summary(self) -> Summary:
        return summarize(self.records, self.wall_s)


@dataclass
class ModeRuns:
    """Every pass of one mode in a run, read like one pass: median walls, all records, all errors."""

    mode: RunMode
    passes: list[ModeResult]

    @property
    def wall_s(self) -> float:
        return statistics.median(p.wall_s for p in self.passes) if self.passes else 0.0

    @property
    def step_walls_s(self) -> dict[str, float]:
        names = dict.fromkeys(name for p in self.passes for name in p.step_walls_s)
        return {name: statistics.median(p.step_walls_s[name] for p in self.passes if name in p.step_walls_s)
                for name in names}

    @property
    def records(self) -> list[RequestRecord]:
        return [record for p in self.passes for record in p.records]

    @property
    def errors(self) -> list[str]:
        return [error for p in self.passes for error in p.errors]

    @property
    def ok(self) -> bool:
        return bool(self.passes) and not self.errors

    def summary(self) -> Summary:
        """Latency over every pass's requests; tokens/s over their summed wall time."""
        return summarize(self.records, sum(p.wall_s for p in self.passes))


@dataclass
class ScenarioRun:
    """Rounds of a sequential and a parallel pass of one scenario, on the same server."""

    scenario: Scenario
    sequential: ModeRuns
    parallel: ModeRuns

    @property
    def round_speedups(self) -> list[float]:
        """Sequential wall over parallel wall, round by round."""
        return [s.wall_s / p.wall_s for s, p in zip(self.sequential.passes, self.parallel.passes, strict=False)
                if p.wall_s > 0]

    @property
    def speedup(self) -> float | None:
        """The median of the rounds' speedups; None when a pass failed."""
        ratios = self.round_speedups
        if not (self.sequential.ok and self.parallel.ok) or not ratios:
            return None
        return statistics.median(ratios)

    @property
    def rounds(self) -> int:
        return min(len(self.sequential.passes), len(self.parallel.passes))


def scenario_request(scenario: Scenario, step: str, agent: Agent, state: dict[str, Any], seed: int) -> ChatRequest:
    """The request ``agent`` of ``step`` sends given the state so far (shared by every runner of scenarios)."""
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


async def run_both(url: str, scenario: Scenario, *, model: str | None = None, warmup: bool = True,
                   read_timeout_s: float = 300.0, rounds: int = 1) -> ScenarioRun:
    """``rounds`` of a sequential and a parallel pass on one client, the order alternating; a warm-up first.

    Stops after the first round with a failed request: later rounds would only
    repeat it.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    passes: dict[RunMode, list[ModeResult]] = {"sequential": [], "parallel": []}
    async with ChatClient(url, model=model, read_timeout_s=read_timeout_s,
                          total_timeout_s=max(600.0, read_timeout_s)) as client:
        if warmup:
            try:
                await client.chat(ChatRequest([{"role": "user", "content": "warm up"}], 4, label="warmup"))
            except RequestError:
                pass  # the real runs will report it
        for index in range(rounds):
            results = [await run_scenario(client, scenario, mode) for mode in _ORDERS[index % 2]]
            for result in results:
                passes[result.mode].append(result)
            if not all(result.ok for result in results):
                break
    return ScenarioRun(scenario, ModeRuns("sequential", passes["sequential"]), ModeRuns("parallel", passes["parallel"]))
