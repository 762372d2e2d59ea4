"""Builders the tests share: the CLI as users run it, SSE bodies, request records, scenario runs.

One home each, so a test reads as what it checks, not how its inputs are made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vramcap.load.measure.record import RequestRecord
from pytest_vramcap.load.run.rounds import ModeResult, ModeRuns, ScenarioRun
from pytest_vramcap.load.scenario.schema import Scenario
from pytest_vramcap.types import FailureKind

__all__ = ["PAIR", "record", "scenario_run", "sse", "timed_record", "vramcap"]

PAIR = Scenario.model_validate({"name": "pair", "steps": [
    {"name": "work", "agents": [{"role": "a", "prompt": "x"}, {"role": "b", "prompt": "y"}]}]})
"""Two agents in one step: the smallest scenario with something to run in parallel."""


def vramcap(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``vramcap`` command in a child process, as users run it: its output and exit code."""
    return subprocess.run([sys.executable, "-m", "pytest_vramcap.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def sse(*events: object) -> bytes:
    """SSE ``data:`` events: an object or list as its JSON, a string or bytes as they are (``[DONE]``, garbage)."""
    def data(event: object) -> bytes:
        if isinstance(event, bytes):
            return event
        return (event if isinstance(event, str) else json.dumps(event)).encode()

    return b"".join(b"data: " + data(event) + b"\n\n" for event in events)


def record(label: str, ttft: float | None, e2e: float | None, n_out: int = 11, *, t_send: float = 0.0,
           error_kind: FailureKind | None = None) -> RequestRecord:
    """A finished (or, with ``e2e`` None, open) request sent at ``t_send``; ``error_kind`` makes it a failed one."""
    return RequestRecord(label=label, t_send=t_send, t_first=None if ttft is None else t_send + ttft,
                         t_last=None if e2e is None else t_send + e2e, n_out=n_out, n_out_source="usage",
                         error=f"{error_kind}: failed" if error_kind else None, error_kind=error_kind)


def timed_record(t_send: float, t_first: float | None, t_last: float | None, n_out: int = 8,
                 label: str = "") -> RequestRecord:
    """A request by its absolute timestamps (``time.monotonic`` values)."""
    return RequestRecord(label=label, t_send=t_send, t_first=t_first, t_last=t_last, n_out=n_out,
                         n_out_source="usage")


def scenario_run(rounds: Sequence[tuple[float, float]], *, scenario: Scenario = PAIR, ttft: float = 0.2,
                 errors: Sequence[str] = (), records: Sequence[RequestRecord] | None = None) -> ScenarioRun:
    """Rounds of (sequential wall, parallel wall), each pass starting 5 s after the last; every agent of the
    scenario's first step answers with ``ttft`` unless ``records`` says otherwise. ``errors`` fail each parallel
    pass."""
    step = scenario.steps[0]

    def one_pass(mode: str, wall: float, start: float) -> ModeResult:
        made = list(records) if records is not None else [
            record(f"{step.name}.{agent.role}", ttft, ttft + 1.0, t_send=start) for agent in step.agents]
        return ModeResult(mode, wall, {step.name: wall}, made, list(errors) if mode == "parallel" else [],  # type: ignore[arg-type]
                          started=start)

    seq = [one_pass("sequential", s, 100.0 + 10 * i) for i, (s, _p) in enumerate(rounds)]
    par = [one_pass("parallel", p, 105.0 + 10 * i) for i, (_s, p) in enumerate(rounds)]
    return ScenarioRun(scenario, ModeRuns("sequential", seq), ModeRuns("parallel", par))
