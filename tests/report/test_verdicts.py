"""Verdicts as pure functions: engine evidence from the real H100 logs, runs built by hand.

No server and no clock: wall times and request timestamps are set explicitly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vramcap.engines.base import EngineEvidence, ServedModel
from pytest_vramcap.engines.judge import Placement
from pytest_vramcap.engines.logparse import ServerLog, parse_server_log
from pytest_vramcap.errors import EngineStartError, ServerUnreachable
from pytest_vramcap.load.run.rounds import ModeResult, ModeRuns, ScenarioRun
from pytest_vramcap.load.scenario.schema import GraphRef, Scenario
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.report.verdicts import (
    Verdict,
    offload_verdict,
    oom_verdict,
    per_model,
    resident_verdict,
    scenario_verdicts,
    served_verdict,
    session_verdicts,
    slo_verdicts,
    slots_verdict,
    speedup_verdict,
    start_failure_verdicts,
)
from tests.factories import record

Q14 = spec_from_shape("qwen2.5-14b", "Q4_K_M")
FITS = make_plan(Q14, resolve_profile("rtx4080", {}), PlanRequest(agents=4, ctx_per_agent=8192))
OVER = make_plan(Q14, resolve_profile("16gb", {}), PlanRequest(agents=4, ctx_per_agent=32768))
SCENARIO = Scenario.model_validate({"name": "pair", "steps": [
    {"name": "work", "agents": [{"role": "a", "prompt": "x"}, {"role": "b", "prompt": "y"}]}]})


def evidence(h100_logs: Path, name: str, **kwargs: object) -> EngineEvidence:
    return EngineEvidence(log=parse_server_log((h100_logs / name).read_text().splitlines()), **kwargs)  # type: ignore[arg-type]


def run(seq_s: float, par_s: float, *, errors: tuple[str, ...] = (),
        ttfts: tuple[float, ...] = (0.2, 0.4)) -> ScenarioRun:
    records = [record(f"work.{role}", ttft, ttft + 1.0) for role, ttft in zip("ab", ttfts, strict=True)]
    return ScenarioRun(SCENARIO, ModeRuns("sequential", [ModeResult("sequential", seq_s, {"work": seq_s}, records)]),
                       ModeRuns("parallel", [ModeResult("parallel", par_s, {"work": par_s}, records, list(errors))]))


def rounds(*walls: tuple[float, float]) -> ScenarioRun:
    """A run of several rounds, each (sequential wall, parallel wall)."""
    def passes(mode: str, index: int) -> ModeRuns:
        return ModeRuns(mode, [ModeResult(mode, pair[index], {"work": pair[index]}, [record("work.a", 0.1, 0.5)])
                               for pair in walls])  # type: ignore[arg-type]
    return ScenarioRun(SCENARIO, passes("sequential", 0), passes("parallel", 1))


# ----------------------------------------------------------------------- oom


def test_oom_at_load_is_read_from_the_log(h100_logs: Path) -> None:
    verdict = oom_verdict(FITS, evidence(h100_logs, "x_oom_fitoff.log", died=True, exit_code=1))
    assert verdict.failed and verdict.name == "oom"
    assert any("cudaMalloc failed: out of memory" in line for line in verdict.evidence)
    assert "server: the process exited during the run (exit code 1)" in verdict.evidence


def test_a_healthy_run_passes_and_says_why(h100_logs: Path) -> None:
    verdict = oom_verdict(FITS, evidence(h100_logs, "m00_q14.log"))
    assert verdict.outcome == "pass" and verdict.summary == "the plan fits and the server stayed up"


def test_a_plan_over_budget_fails_before_anything_runs() -> None:
    verdict = oom_verdict(OVER, EngineEvidence(log=None))
    assert verdict.failed
    assert verdict.evidence[0].startswith("plan: ") and "1024 MiB fit margin > 16384 MiB usable" in verdict.evidence[0]


def test_out_of_memory_answers_count_whatever_their_case() -> None:
    errors = ["work.a: HTTP 500: CUDA error: Out Of Memory", "work.b: HTTP 503: server busy"]
    verdict = oom_verdict(FITS, EngineEvidence(log=None), errors)
    assert verdict.failed and verdict.evidence == ("request: work.a: HTTP 500: CUDA error: Out Of Memory",)


def test_a_server_we_stopped_did_not_die() -> None:
    assert not oom_verdict(None, EngineEvidence(log=ServerLog(), died=False, exit_code=0)).failed


# ------------------------------------------------------------------- offload


def test_offload_verdict_on_every_h100_log(h100_logs: Path) -> None:
    outcomes = {name: offload_verdict(evidence(h100_logs, name)).outcome
                for name in ("m00_q14.log", "m06_l8.log", "m09_q7.log", "x_ngl30.log", "x_offload_fiton.log")}
    assert outcomes == {"m00_q14.log": "pass", "m06_l8.log": "pass", "m09_q7.log": "pass",
                        "x_ngl30.log": "fail", "x_offload_fiton.log": "fail"}


def test_fit_spill_names_layers_kv_and_fit(h100_logs: Path) -> None:
    verdict = offload_verdict(evidence(h100_logs, "x_offload_fiton.log"))
    assert verdict.evidence[0] == "log: offloaded 21/49 layers to GPU (28 left on the CPU)"
    assert "log: CPU KV buffer 14336.00 MiB" in verdict.evidence
    fit_line = "log: --fit: - CUDA0 (NVIDIA H100 80GB HBM3): 21 layers,  14603 MiB used,   1247 MiB free"
    assert fit_line in verdict.evidence
    assert verdict.evidence[-1] == "log: layers with weights on the CPU: 0-27"


def test_moe_expert_overflow_fails_against_the_plan_with_the_moved_mib(h100_logs: Path) -> None:
    """The verdict bug of issue 10: "offloaded 49/49" while fit moved the experts of 34 layers."""
    memory = estimate_memory(spec_from_shape("qwen3-30b-a3b", "Q4_K_M"),
                             ServerConfig(parallel=2, ctx_per_agent=87296), resolve_profile("h100", {}))
    verdict = offload_verdict(evidence(h100_logs, "moe_qwen3_30b_fit_overflow.log"), Placement.planned(memory))
    assert verdict.outcome == "fail"
    assert verdict.summary == "weights or KV cache spilled to the CPU: 11219 MiB of weights moved"
    assert verdict.evidence[-1] == "log: moved: 11218.51 MiB of weights, layers 15-47"


def test_a_model_that_never_finished_loading_is_not_judged(h100_logs: Path) -> None:
    """x_oom_fitoff: 49/49 layers loaded, then the KV cache failed: not "all on the GPU"."""
    verdict = offload_verdict(evidence(h100_logs, "x_oom_fitoff.log", died=True, exit_code=1))
    assert verdict.outcome == "n/a" and verdict.summary == "the model did not finish loading: nothing to judge"


def test_offload_does_not_apply_without_a_gpu_or_a_log() -> None:
    assert offload_verdict(EngineEvidence(log=None)).outcome == "n/a"
    cpu_only = ServerLog()
    cpu_only.kv.by_backend["CPU"] = 64.0
    assert offload_verdict(EngineEvidence(log=cpu_only)).summary.startswith("CPU-only engine")


# ------------------------------------------------------------------- speedup


@pytest.mark.parametrize("seq_s, par_s, minimum, outcome", [
    (3.0, 2.0, 1.4, "pass"), (3.0, 2.5, 1.4, "fail"), (3.0, 2.0, None, "n/a"), (2.8, 2.0, 1.4, "pass")])
def test_speedup_against_its_minimum(seq_s: float, par_s: float, minimum: float | None, outcome: str) -> None:
    verdict = speedup_verdict(run(seq_s, par_s), minimum)
    assert verdict.outcome == outcome
    assert verdict.evidence[0] == f"sequential {seq_s:.2f} s, parallel {par_s:.2f} s"


def test_a_speedup_just_under_its_minimum_does_not_read_as_equal() -> None:
    """Measured on the H100: 4.3160 s / 3.6016 s = 1.1984x against a 1.2 minimum printed "1.20x, minimum 1.20x"."""
    verdict = speedup_verdict(run(4.3160, 3.6016), 1.2)
    assert verdict.failed and verdict.summary == "1.198x, minimum 1.20x"
    assert speedup_verdict(run(2.4, 2.0), 1.2).summary == "1.20x, minimum 1.20x"  # exactly met: two decimals


def test_fewer_slots_than_agents_fail_whatever_the_clock_says() -> None:
    verdict = slots_verdict(1, run(2.0, 1.0))
    assert verdict.failed and verdict.summary.startswith("the server has 1 slot(s) for 2 concurrent agents")
    assert verdict.evidence == ("step work: 2 agents on 1 slot(s)",)
    assert slots_verdict(2, run(2.0, 1.0)).outcome == "pass" and slots_verdict(4, run(2.0, 1.0)).outcome == "pass"


GRAPH = Scenario.model_construct(name="app", steps=[], graph=GraphRef.model_construct(file=Path("app.py"),
                                                                                     attribute="graph"),
                                 expect=SCENARIO.expect)
"""A graph scenario as the verdicts see one: no steps, its width counted in its passes."""


def graph_run(peak: int, *, errors: tuple[str, ...] = (), unrecorded: dict[str, int] | None = None) -> ScenarioRun:
    def passes(mode: str) -> ModeRuns:
        return ModeRuns(mode, [ModeResult(mode, 1.0, {}, [], list(errors), peak_in_flight=peak,  # type: ignore[arg-type]
                                          unrecorded=dict(unrecorded or {}))])
    return ScenarioRun(GRAPH, passes("sequential"), passes("parallel"))


def test_a_graph_that_made_no_recorded_request_has_no_slots_verdict() -> None:
    # before: "4 slot(s) for at most 0 requests in flight" passed
    nothing = graph_run(0, errors=("nothing was measured: the graph made no chat or text completion (the requests "
                                   "vramcap records); it called POST /v1/embeddings x2",),
                        unrecorded={"POST /v1/embeddings": 2})
    verdict = slots_verdict(4, nothing)
    assert verdict.outcome == "n/a" and verdict.summary == "the graph's parallel pass made no recorded request"
    speedup = speedup_verdict(nothing, None)
    assert speedup.failed and any(line.startswith("nothing was measured") for line in speedup.evidence)
    assert nothing.parallel.unrecorded == {"POST /v1/embeddings": 2}
    assert slots_verdict(4, graph_run(3)).summary == ("4 slot(s) for at most 3 requests in flight at once (the "
                                                      "graph's fan-out)")


def test_the_speedup_is_the_median_of_interleaved_rounds_with_its_spread() -> None:
    noisy = rounds((3.0, 2.0), (9.0, 2.0), (3.3, 2.0))  # a neighbour slowed one sequential pass threefold
    assert noisy.speedup == 1.65 and noisy.rounds == 3
    verdict = speedup_verdict(noisy, 1.4)
    assert verdict.outcome == "pass" and verdict.summary == "1.65x, minimum 1.40x"
    assert verdict.evidence[:2] == ("sequential 3.30 s, parallel 2.00 s (medians of 3 interleaved rounds)",
                                    "speedup per round: 1.50x, 4.50x, 1.65x (spread 1.50x-4.50x)")


def test_a_run_with_errors_has_no_speedup() -> None:
    verdict = speedup_verdict(run(2.0, 1.0, errors=("work.b: stream cut",)), 1.0)
    assert verdict.failed and verdict.summary == "the runs did not complete"
    assert "work.b: stream cut" in verdict.evidence


# ----------------------------------------------------------------------- slo


def test_slo_reads_the_parallel_pass() -> None:
    verdicts = slo_verdicts(run(2.0, 1.0, ttfts=(0.2, 0.4)), [("ttft_p50_s", 0.35), ("ttft_p95_s", 0.35)])
    assert [(v.name, v.outcome) for v in verdicts] == [("slo:ttft_p50_s", "pass"), ("slo:ttft_p95_s", "fail")]
    assert verdicts[1].evidence == ("ttft p95 = 0.390 s over n = 2 requests",)


def test_slo_without_samples_fails() -> None:
    single = [record("work.a", 0.1, 0.2, n_out=1)]
    one_token = ScenarioRun(SCENARIO, ModeRuns("sequential", [ModeResult("sequential", 1.0, {}, [])]),
                            ModeRuns("parallel", [ModeResult("parallel", 1.0, {}, single)]))
    assert slo_verdicts(one_token, [("tpot_p50_s", 1.0)])[0].summary == "no tpot samples"


# ----------------------------------------------------------- composed verdicts


def test_scenario_verdicts_use_the_plans_slots(h100_logs: Path) -> None:
    verdicts = scenario_verdicts(FITS, evidence(h100_logs, "m00_q14.log"), run(3.0, 2.0), 1.4, [("e2e_p95_s", 5.0)])
    assert [(v.name, v.outcome) for v in verdicts] == [
        ("oom", "pass"), ("cpu_offload", "pass"), ("served_as_planned", "n/a"), ("resident", "pass"),
        ("client_options", "n/a"), ("output_budget", "n/a"), ("slots", "pass"), ("context", "n/a"),
        ("prompt_cache", "n/a"), ("parallel_speedup", "pass"), ("slo:e2e_p95_s", "pass")]


def test_resident_fails_on_a_death_or_a_reload_and_knows_nothing_of_an_attached_server(h100_logs: Path) -> None:
    assert resident_verdict(evidence(h100_logs, "m00_q14.log")).outcome == "pass"
    died = resident_verdict(EngineEvidence(log=ServerLog(), died=True, exit_code=-9))
    assert died.failed and "exit code -9" in died.summary
    reloaded = resident_verdict(EngineEvidence(log=None, reloads=("/api/ps: qwen-vramcap unloaded mid-run",)))
    assert reloaded.failed and reloaded.evidence == ("/api/ps: qwen-vramcap unloaded mid-run",)
    assert resident_verdict(EngineEvidence(log=None)).outcome == "n/a"


def test_per_model_fails_when_one_model_fails_and_names_it() -> None:
    combined = per_model("oom", {"chat": Verdict(name="oom", outcome="pass", summary="no OOM"),
                                 "embed": Verdict(name="oom", outcome="fail", summary="OOM at load",
                                                  evidence=("log: out of memory",))})
    assert combined.failed and combined.summary == "embed: OOM at load"
    assert combined.evidence == ("embed: log: out of memory",)
    both = session_verdicts({"chat": EngineEvidence(log=ServerLog()),
                             "embed": EngineEvidence(log=ServerLog(), died=True, exit_code=1)}, None)
    assert [v.name for v in both] == ["oom"] and both[0].summary.startswith("embed: ")


# ----------------------------------------------------------- what Ollama reports (/api/ps)

def served(size: float, vram: float, context: int | None = 8192) -> ServedModel:
    return ServedModel("qwen2.5-vramcap:latest", size, vram, context)


def test_ollama_serving_part_of_the_model_from_the_cpu_is_an_offload() -> None:
    verdict = offload_verdict(EngineEvidence(log=None, served=served(10000, 7500)))
    assert verdict.outcome == "fail" and verdict.summary == "Ollama serves 25% of the model from the CPU"
    assert verdict.evidence == ("/api/ps: size 10000 MiB, size_vram 7500 MiB (25% CPU), context_length 8192",)


def test_attached_ollama_without_a_log_is_judged_by_its_split() -> None:
    assert offload_verdict(EngineEvidence(log=None, served=served(10000, 10000))).outcome == "pass"
    assert offload_verdict(EngineEvidence(log=None, served=served(10000, 0))).outcome == "n/a"


def test_served_as_planned_checks_the_context_and_reloads() -> None:
    planned = FITS.config.ctx_per_agent
    assert served_verdict(FITS, EngineEvidence(log=None)).outcome == "n/a"
    assert served_verdict(FITS, EngineEvidence(log=None, served=served(100, 100, planned))).outcome == "pass"
    clamped = served_verdict(FITS, EngineEvidence(log=None, served=served(100, 100, 4096)))
    assert clamped.outcome == "fail"
    assert clamped.evidence[0] == f"/api/ps: context_length 4096, planned {planned} per agent"
    reloaded = served_verdict(FITS, EngineEvidence(log=None, served=served(100, 100, planned),
                                                   reloads=("Ollama reloaded m: ...",)))
    assert reloaded.outcome == "fail" and reloaded.evidence == ("Ollama reloaded m: ...",)


def test_a_server_that_never_started(h100_logs: Path) -> None:
    crashed = start_failure_verdicts(FITS, evidence(h100_logs, "x_oom_fitoff.log", died=True, exit_code=1),
                                     EngineStartError("llama-server exited with code 1 before healthy", "tail"))
    assert crashed[0].failed and any("cudaMalloc" in line for line in crashed[0].evidence)
    timed_out = start_failure_verdicts(FITS, EngineEvidence(log=ServerLog()),
                                       EngineStartError("llama-server did not become healthy within 2 s", "tail"))
    assert timed_out[0].summary == "the server did not start"
    assert timed_out[0].evidence == ("server: llama-server did not become healthy within 2 s",)


def test_session_verdicts_after_the_last_test(h100_logs: Path) -> None:
    assert session_verdicts(evidence(h100_logs, "m00_q14.log"), None) == []
    died = session_verdicts(EngineEvidence(log=ServerLog(), died=True, exit_code=-9), None)
    assert [v.name for v in died] == ["oom"]
    unreachable = session_verdicts(None, ServerUnreachable("no healthy server at http://127.0.0.1:9"))
    assert [(v.name, v.summary) for v in unreachable] == [("engine", "no healthy server at http://127.0.0.1:9")]


def test_verdicts_survive_the_json_round_trip() -> None:
    verdict = Verdict(name="oom", outcome="fail", summary="s", evidence=("a", "b"))
    assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict
    assert verdict.describe() == "[FAIL] oom: s\n    - a\n    - b"
