"""What a run of a scenario is, whichever runner made it: passes, rounds, the speedup.

A run repeats a sequential and a parallel pass in rounds whose order alternates
(sequential first, then parallel first, ...), so drift on a busy machine lands on
both sides; the speedup is the median of the rounds' ratios, reported with their
range. :mod:`.steps` runs scenarios of steps, :mod:`.graphs` a user's graph.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ...types import RunMode
from ..measure.client import ChatClient, ChatRequest
from ..measure.metrics import Summary, parallel_speedup, summarize
from ..measure.record import RequestError, RequestRecord, number_turns
from ..scenario.schema import Scenario

__all__ = ["ModeResult", "ModeRuns", "ScenarioRun", "pass_marker", "run_rounds", "runner_request_fields",
           "speedup_settled", "warm_up"]


def runner_request_fields(prompt_cache: bool) -> dict[str, Any]:
    """Set on every request a runner sends (a graph's, where it left the key out): llama-server's
    ``cache_prompt``, on as engines run (Ollama always sends it on, and ignores the field from a client), or off
    for passes that must not reuse any prefill."""
    return {"cache_prompt": prompt_cache}


def pass_marker() -> str:
    """A line that leads the first message of every request of one pass, new for each pass.

    With the prompt cache on, a pass could otherwise reuse the prefill of the pass before it (the same prompts,
    a moment earlier: the parallel pass measured 2.8x for a 1.4x batching gain). A marker of its own puts every
    pass on a cold cache for its prompts, on any engine, while the agents of one pass still share their common
    prefix: the state both passes start from is the same.
    """
    return f"[vramcap pass {uuid.uuid4().hex[:8]}]"

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
    peak_in_flight: int | None = None
    """A graph's pass: the most of its requests in flight at once (counted by the proxy, no clock)."""
    user_traceback: str = ""
    """A graph's pass that raised: the user's traceback, shown once with the failure."""
    unrecorded: dict[str, int] = field(default_factory=dict)
    """A graph's pass: the requests the proxy passed through unrecorded, by endpoint (``POST /v1/embeddings``: 2)."""
    embeddings: list[RequestRecord] = field(default_factory=list)
    """The embedding requests of the pass (retrievals before answers), apart from the chats the verdicts read."""

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
        return summarize(self.records + self.embeddings, self.wall_s)


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
    def embeddings(self) -> list[RequestRecord]:
        return [record for p in self.passes for record in p.embeddings]

    @property
    def errors(self) -> list[str]:
        return [error for p in self.passes for error in p.errors]

    @property
    def unrecorded(self) -> dict[str, int]:
        """The unrecorded requests of every pass, by endpoint."""
        counts: dict[str, int] = {}
        for p in self.passes:
            for endpoint, count in p.unrecorded.items():
                counts[endpoint] = counts.get(endpoint, 0) + count
        return dict(sorted(counts.items()))

    @property
    def ok(self) -> bool:
        return bool(self.passes) and not self.errors

    def summary(self) -> Summary:
        """Latency over every pass's requests; tokens/s over their summed wall time."""
        return summarize(self.records + self.embeddings, sum(p.wall_s for p in self.passes))


@dataclass
class ScenarioRun:
    """Rounds of a sequential and a parallel pass of one scenario, on the same server."""

    scenario: Scenario
    sequential: ModeRuns
    parallel: ModeRuns
    prompt_cache: bool = False
    """Whether the engine's prompt cache was on; each pass then started cold for its own prompts
    (:func:`pass_marker`)."""
    planned_rounds: int = 0
    """The rounds asked for; fewer ran when a round failed or the speedup settled (:func:`speedup_settled`)."""

    @property
    def round_speedups(self) -> list[float]:
        """Sequential wall over parallel wall, round by round."""
        return [parallel_speedup(s.wall_s, p.wall_s)
                for s, p in zip(self.sequential.passes, self.parallel.passes, strict=False) if p.wall_s > 0]

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

    @property
    def width(self) -> int | None:
        """The agents meant to run at once: the widest step, or the most requests a graph had in flight in a
        parallel pass (None before one ran)."""
        if self.scenario.max_width is not None:
            return self.scenario.max_width
        return max((p.peak_in_flight for p in self.parallel.passes if p.peak_in_flight is not None), default=None)

    def for_model(self, role: str, first: bool) -> ScenarioRun:
        """The part of the run that talked to the model of ``role`` (``first``: also the agents that name no
        model): its agents' steps and chat records, for the verdicts that judge one model's slots and context."""
        def mine(name: str | None) -> bool:
            return name == role or (first and name is None)

        steps = [step.model_copy(update={"agents": [agent for agent in step.agents if mine(agent.model)]})
                 for step in self.scenario.steps]
        scenario = self.scenario.model_copy(update={"steps": [step for step in steps if step.agents]})

        def runs(mode: ModeRuns) -> ModeRuns:
            return ModeRuns(mode.mode, [replace(p, records=[r for r in p.records if mine(r.model)], embeddings=[])
                                        for p in mode.passes])

        return ScenarioRun(scenario, runs(self.sequential), runs(self.parallel), self.prompt_cache)

    @property
    def user_traceback(self) -> str:
        return next((p.user_traceback for p in self.sequential.passes + self.parallel.passes if p.user_traceback),
                    "")


async def warm_up(client: ChatClient) -> None:
    """One tiny request first: the server's first batch pays one-off costs no pass should carry."""
    try:
        await client.chat(ChatRequest([{"role": "user", "content": "warm up"}], 4, label="warmup"))
    except RequestError:
        pass  # the real runs will report it


def speedup_settled(minimum: float, rounds: int) -> Callable[[ScenarioRun], bool]:
    """A ``settled`` rule for :func:`run_rounds`: the median of ``rounds`` speedups is on one side of ``minimum``
    whatever the rounds still to run give, once more than half of them are on that side already (for an even count
    both middle values are then on it, and so is their mean): the ``parallel_speedup`` verdict is the one all the
    rounds would have given."""
    needed = rounds // 2 + 1

    def settled(run: ScenarioRun) -> bool:
        speedups = run.round_speedups
        reached = sum(speedup >= minimum for speedup in speedups)
        return reached >= needed or len(speedups) - reached >= needed

    return settled


async def run_rounds(scenario: Scenario, run_pass: Callable[[RunMode], Awaitable[ModeResult]],
                     rounds: int, prompt_cache: bool = False,
                     settled: Callable[[ScenarioRun], bool] | None = None) -> ScenarioRun:
    """``rounds`` of a sequential and a parallel pass, the order alternating; stops after a round that failed
    (later rounds would only repeat it), or once ``settled`` says the speedups so far decide what was asked of
    them (:func:`speedup_settled`). Each pass's records are numbered by turn."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    run = ScenarioRun(scenario, ModeRuns("sequential", []), ModeRuns("parallel", []), prompt_cache, rounds)
    for index in range(rounds):
        results = [await run_pass(mode) for mode in _ORDERS[index % 2]]
        for result in results:
            number_turns(result.records)
            number_turns(result.embeddings)
            (run.sequential if result.mode == "sequential" else run.parallel).passes.append(result)
        if not all(result.ok for result in results):
            break
        if settled is not None and index + 1 < rounds and settled(run):
            break
    return run
