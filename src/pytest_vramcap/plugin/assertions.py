"""Assertion helpers for your own tests, with messages that say what happened.

    def test_agents(vramcap_server, vramcap_fanout):
        run = vramcap_fanout.run("scenarios/research-fanout.yaml")
        assert_no_oom(vramcap_server)
        assert_no_cpu_offload(vramcap_server)
        assert_parallel_speedup(run, 1.5)
        assert_slo(run, ttft_p95_s=10, tpot_p50_s=0.5)

Each one applies the same verdict as the scenario tests, to the same evidence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engines.base import Server
    from ..load.run.rounds import ScenarioRun
    from ..planner.plan import Plan
    from ..report.verdicts import Verdict

__all__ = ["assert_no_cpu_offload", "assert_no_oom", "assert_parallel_speedup", "assert_slo"]


def _check(verdict: Verdict) -> None:
    __tracebackhide__ = True
    if verdict.failed:
        raise AssertionError(verdict.describe())


def assert_no_oom(server: Server, plan: Plan | None = None) -> None:
    """The server allocated everything and is still up (and the plan, if given, fits)."""
    __tracebackhide__ = True
    from ..report.verdicts import oom_verdict

    _check(oom_verdict(plan, server.evidence()))


def assert_no_cpu_offload(server: Server) -> None:
    """On a GPU run, every layer and the whole KV cache stayed on the GPU."""
    __tracebackhide__ = True
    from ..report.verdicts import offload_verdict

    _check(offload_verdict(server.evidence()))


def assert_parallel_speedup(run: ScenarioRun, minimum: float) -> None:
    """Sequential wall time / parallel wall time >= ``minimum``."""
    __tracebackhide__ = True
    from ..report.verdicts import speedup_verdict

    _check(speedup_verdict(run, minimum))


def assert_slo(run: ScenarioRun, **limits: float) -> None:
    """Latency objectives over the parallel run, e.g. ``ttft_p95_s=10, tpot_p50_s=0.5``."""
    __tracebackhide__ = True
    from ..load.scenario.schema import SLO
    from ..report.verdicts import slo_verdicts

    for verdict in slo_verdicts(run, SLO(**limits).items()):
        _check(verdict)
