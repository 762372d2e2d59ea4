"""The verdict table at the end of a run, from typed results (no pytester)."""

from __future__ import annotations

from pytest_vramcap.load.run.rounds import ModeResult, ModeRuns, ScenarioRun
from pytest_vramcap.load.scenario.schema import Scenario
from pytest_vramcap.report.schema import ScenarioResult
from pytest_vramcap.report.terminal import summary_table
from pytest_vramcap.report.verdicts import Verdict
from tests.factories import record

SCENARIO = Scenario.model_validate({"name": "pair", "steps": [{"name": "s", "agents": [{"role": "a", "prompt": "x"}]}]})


def verdict(name: str, outcome: str) -> Verdict:
    return Verdict(name=name, outcome=outcome, summary="")  # type: ignore[arg-type]


def test_a_completed_and_a_never_started_scenario() -> None:
    records = [record("s.a", 0.1, 0.5, 8)]
    run = ScenarioRun(SCENARIO, ModeRuns("sequential", [ModeResult("sequential", 3.24, {"s": 3.24}, records)]),
                      ModeRuns("parallel", [ModeResult("parallel", 2.51, {"s": 2.51}, records)]))
    ran = ScenarioResult.of("code-docs-critic", "scenarios/c.yaml::c", run, 1.2, [
        verdict("oom", "pass"), verdict("cpu_offload", "n/a"), verdict("resident", "pass"),
        verdict("client_options", "fail"),
        verdict("slots", "pass"), verdict("context", "pass"), verdict("prompt_cache", "n/a"),
        verdict("parallel_speedup", "pass"), verdict("slo:ttft_p95_s", "fail")])
    never = ScenarioResult.of("long-context-pair", "scenarios/l.yaml::l", None, None, [
        verdict("oom", "fail"), verdict("cpu_offload", "n/a")])
    lines = summary_table([ran, never]).splitlines()
    assert lines[0].split() == ["scenario", "seq", "s", "par", "s", "speedup", "min", "oom", "offload", "resident",
                                "options", "budget", "slots", "context", "cache", "speedup", "slo", "result"]
    assert lines[2].split() == ["code-docs-critic", "3.24", "2.51", "1.29x", "1.20x", "pass", "n/a", "pass", "fail",
                                "-", "pass", "pass", "n/a", "pass", "fail", "FAILED"]
    assert lines[3].split() == ["long-context-pair", "-", "-", "-", "-", "fail", "n/a", "-", "-", "-", "-", "-", "-",
                                "-", "-", "FAILED"]


def test_results_travel_as_json_and_come_back_typed() -> None:
    result = ScenarioResult.of("x", "n", None, 1.5, [verdict("oom", "pass")])
    back = ScenarioResult.model_validate_json(result.model_dump_json())
    assert back == result and back.passed and back.outcome("oom") == "pass" and back.outcome("slo:x") == "-"
