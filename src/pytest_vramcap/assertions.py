"""Assertion helpers for your own tests, with messages that say what happened.

    def test_agents(vramcap_server, vramcap_fanout):
        run = vramcap_fanout.run("scenarios/research-fanout.yaml")
        assert_no_oom(vramcap_server)
        assert_no_cpu_offload(vramcap_server)
        assert_parallel_speedup(run, 1.5)
        assert_slo(run, ttft_p95_s=10, tpot_p50_s=0.5)
"""

from __future__ import annotations

from typing import Any

from .fanout import ScenarioRun
from .verdicts import Verdict, offload_verdict, oom_verdict, slo_verdicts, speedup_verdict

__all__ = ["assert_no_oom", "assert_no_cpu_offload", "assert_parallel_speedup", "assert_slo"]


def _check(verdict: Verdict) -> None:
    __tracebackhide__ = True
    if verdict.failed:
        raise AssertionError(verdict.describe())


def assert_no_oom(server: Any, plan: Any = None) -> None:
    """The server allocated everything and is still up (and the plan, if given, fits)."""
    __tracebackhide__ = True
    log = getattr(server, "log", None)
    alive = getattr(server, "running", None)
    _check(oom_verdict(plan, log, alive, getattr(server, "exit_code", None)))


def assert_no_cpu_offload(server: Any) -> None:
    """On a GPU run, every layer and the whole KV cache stayed on the GPU."""
    __tracebackhide__ = True
    _check(offload_verdict(getattr(server, "log", None)))


def assert_parallel_speedup(run: ScenarioRun, minimum: float) -> None:
    """Sequential wall time / parallel wall time >= ``minimum``."""
    __tracebackhide__ = True
    _check(speedup_verdict(run, minimum))


def assert_slo(run: ScenarioRun, **limits: float) -> None:
    """Latency objectives over the parallel run, e.g. ``ttft_p95_s=10, tpot_p50_s=0.5``."""
    __tracebackhide__ = True
    from .scenarios import SLO

    objectives = SLO(**limits).items()
    for verdict in slo_verdicts(run, objectives):
        _check(verdict)
