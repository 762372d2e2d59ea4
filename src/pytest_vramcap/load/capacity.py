"""The capacity search, without Locust: judging one step of the ramp, finding the knee, the table.

The ramp (:class:`~pytest_vramcap.locust.run.StepShape`, Locust's LoadTestShape) raises the number of
concurrent agents step by step; each user is one agent asking one request after another
(:data:`CAPACITY_SCENARIO`), so users = concurrent agents. A step meets the objective when none of the
requests sent during it failed and their TTFT p95 is at most the limit. A request still waiting for its first
token when the step ends counts with the wait so far: a queue that starves agents breaks the objective even
before they are answered. The knee is the most agents of a step that met it, below the first step that did not.

A step is counted as its requests end (:class:`StepTally`), so judging it never rescans the run: the ramp keeps
the judged steps' results and the current step's tally, whose TTFTs are kept exact (the step's p95 is what
decides it) and dropped when the next step starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tabulate import tabulate

from .measure.metrics import Distribution
from .measure.record import RequestRecord
from .scenario.schema import Scenario

__all__ = ["CAPACITY_SCENARIO", "CapacityResult", "StepResult", "StepTally", "capacity_json", "format_capacity",
           "judge_step"]

CAPACITY_SCENARIO = Scenario.model_validate({
    "name": "capacity-agent",
    "description": "one agent asking one request after another: a user is one concurrent agent",
    "inputs": {"task": "list the steps to review a pull request"},
    "steps": [{"name": "work", "agents": [{"role": "agent", "prompt": "Task: {task}", "max_tokens": 64}]}],
})


@dataclass(frozen=True)
class StepResult:
    users: int
    seconds: float
    requests: int
    """Requests sent during the step: finished, failed, or still open at its end."""
    failed: int
    failures: dict[str, str]
    """The first error of each failure kind (load/measure/failures.py) among them."""
    waiting: int
    """Of those, still without a first token when the step ended."""
    ttft: Distribution | None
    output_tps: float
    """Output tokens of requests that finished during the step, per second of the step."""
    met: bool


@dataclass
class StepTally:
    """The requests of one step that ended so far, counted as each ends (:meth:`add`)."""

    start: float
    """``time.monotonic()`` when the step began: requests sent before it belong to an earlier step."""
    sent: int = 0
    """Requests sent during the step that have ended (failed or not)."""
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    ttfts: list[float] = field(default_factory=list)
    """TTFT of each of them that had a first token (this step's only: a step is one judgement)."""
    tokens: int = 0
    """Output tokens of requests that ended during the step, whenever they were sent."""

    def add(self, record: RequestRecord) -> None:
        if record.t_last is not None and record.t_last >= self.start:
            self.tokens += record.n_out
        if record.t_send < self.start:
            return
        self.sent += 1
        if record.ttft is not None:
            self.ttfts.append(record.ttft)
        if not record.ok:
            self.failed += 1
            self.failures.setdefault(record.error_kind or "server_error", record.error or "")


def judge_step(users: int, step: StepTally, open_requests: Iterable[RequestRecord], end: float,
               ttft_p95_s: float) -> StepResult:
    """The step that ``step`` counted, ending at ``end`` (``time.monotonic``); ``open_requests`` are those still
    in flight."""
    start = step.start
    ttfts = list(step.ttfts)
    waiting = still_open = 0
    for record in open_requests:
        if start <= record.t_send < end:
            still_open += 1
            if record.t_first is not None:
                ttfts.append(record.t_first - record.t_send)
            else:
                waiting += 1
                ttfts.append(end - record.t_send)  # a lower bound: it has waited this long so far
    distribution = Distribution.of(ttfts)
    met = step.failed == 0 and distribution is not None and distribution.p95 <= ttft_p95_s
    return StepResult(users=users, seconds=end - start, requests=step.sent + still_open, failed=step.failed,
                      failures=dict(step.failures), waiting=waiting, ttft=distribution,
                      output_tps=step.tokens / (end - start) if end > start else 0.0, met=met)


@dataclass
class CapacityResult:
    scenario: str
    ttft_p95_s: float
    max_users: int
    steps: list[StepResult] = field(default_factory=list)
    planned_slots: int | None = None
    """The plan's slot count (llama-server -np), when vramcap planned the server."""
    profile: str | None = None

    @property
    def knee(self) -> int | None:
        """The most concurrent agents that met the objective, below the first step that did not."""
        knee = None
        for step in self.steps:
            if not step.met:
                break
            knee = step.users
        return knee

    @property
    def broke(self) -> bool:
        """Whether a step broke the objective (else the ramp stopped at ``max_users``: the knee is at least that)."""
        return any(not step.met for step in self.steps)


def format_capacity(result: CapacityResult) -> str:
    rows = [(step.users, step.requests, step.failed, step.waiting,
             "-" if step.ttft is None else f"{step.ttft.p50:.3f}", "-" if step.ttft is None else f"{step.ttft.p95:.3f}",
             f"{step.output_tps:.1f}", "yes" if step.met else "NO") for step in result.steps]
    table = tabulate(rows, headers=("agents", "requests", "failed", "waiting", "TTFT p50 (s)", "TTFT p95 (s)",
                                    "tokens/s", f"p95 <= {result.ttft_p95_s:g} s"))
    knee = result.knee
    where = f" on {result.profile}" if result.profile else ""
    if knee is None:
        verdict = f"knee: none: even {result.steps[0].users if result.steps else 1} agent(s) miss TTFT p95 <= " \
                  f"{result.ttft_p95_s:g} s{where}"
    elif result.broke:
        verdict = f"knee: {knee} concurrent agents meet TTFT p95 <= {result.ttft_p95_s:g} s{where}"
    else:
        verdict = f"knee: at least {knee} concurrent agents meet TTFT p95 <= {result.ttft_p95_s:g} s{where} " \
                  f"(the ramp stopped at --max-users {result.max_users})"
    if result.planned_slots is not None:
        verdict += f"; the plan has {result.planned_slots} slots"
    failures = [f"  {step.users} agents: {kind}: {error[:160]}" for step in result.steps
                for kind, error in step.failures.items()]
    return "\n".join([f"{result.scenario}: concurrent agents stepped up until TTFT p95 > {result.ttft_p95_s:g} s",
                      "", table, *(["", "failures (the first of each kind):", *failures] if failures else []),
                      "", verdict])


def capacity_json(result: CapacityResult) -> dict[str, Any]:
    return {"scenario": result.scenario, "ttft_p95_s": result.ttft_p95_s, "max_users": result.max_users,
            "profile": result.profile, "planned_slots": result.planned_slots, "knee": result.knee,
            "broke": result.broke,
            "steps": [{**asdict(step), "ttft": step.ttft.model_dump() if step.ttft else None} for step in result.steps]}
