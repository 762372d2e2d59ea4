"""Baselines and the regression gate as pure functions: runs built by hand, no server and no clock.

Each run has rounds with set wall times and request timestamps, so every
median, spread and allowance below is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vramcap.errors import ConfigError
from pytest_vramcap.load.scenario.schema import Scenario
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.options import plan_change
from pytest_vramcap.parsers import baseline_name, compare_fail
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile
from pytest_vramcap.planner.output import plan_json
from pytest_vramcap.report.compare import compare, format_comparison
from pytest_vramcap.report.files import write_baseline, write_report
from pytest_vramcap.report.schema import RunReport, ScenarioResult
from pytest_vramcap.report.snapshot import METRICS, RUN_ROW, load_snapshot, snapshot_of
from pytest_vramcap.report.verdicts import Verdict
from pytest_vramcap.types import GATE_METRICS
from tests.factories import scenario_run

PLAN = make_plan(spec_from_shape("qwen2.5-14b", "Q4_K_M"), resolve_profile("rtx4080", {}),
                 PlanRequest(agents=4, ctx_per_agent=8192))
SCENARIO = Scenario.model_validate({"name": "pair", "steps": [
    {"name": "work", "agents": [{"role": "a", "prompt": "x"}, {"role": "b", "prompt": "y"}]}]})
PASS_ALL = [Verdict(name="oom", outcome="pass", summary="ok"), Verdict(name="slots", outcome="pass", summary="ok")]


def report(rounds: list[tuple[float, float]], *, ttft: float = 0.2, verdicts: list[Verdict] | None = None,
           host: str = "ci-1", cpu: str = "x", profile: str = "rtx4080", model: str = "qwen2.5-14b",
           peak: float | None = None,
           extra: tuple[ScenarioResult, ...] = ()) -> RunReport:
    result = ScenarioResult.of("pair", "scenarios/pair.yaml::pair", scenario_run(rounds, ttft=ttft), None,
                               verdicts if verdicts is not None else PASS_ALL)
    plan = plan_json(PLAN)
    plan["model"]["name"] = model
    return RunReport(profile={"name": profile}, plan=plan, engine={"kind": "llamacpp"},
                     gpu={"gpus": [], "measured": {"peak_process_mib": peak} if peak else None},
                     versions={}, machine={"host": host, "cpu": cpu, "cpus": 2}, scenarios=[result, *extra],
                     session_verdicts=[], passed=True)


BASE = [(3.0, 2.0), (3.3, 2.0), (3.0, 2.2)]  # speedups 1.5, 1.65, 1.364: median 1.5, spread 0.286


def test_gate_metrics_are_all_defined() -> None:
    assert set(METRICS) == set(GATE_METRICS)


def test_snapshot_keeps_each_round() -> None:
    snap = snapshot_of(report(BASE))
    metrics = snap.scenarios[0].metrics
    assert metrics["speedup"].values == pytest.approx([1.5, 1.65, 3.0 / 2.2])
    assert metrics["speedup"].median == pytest.approx(1.5)
    assert metrics["seq_wall"].values == [3.0, 3.3, 3.0] and metrics["par_wall"].median == 2.0
    assert metrics["ttft_p95"].values == pytest.approx([0.2, 0.2, 0.2])
    assert metrics["output_tps"].values == pytest.approx([22 / 2.0, 22 / 2.0, 22 / 2.2])
    assert "peak_vram" not in metrics  # no GPU sampled it
    assert snap.scenarios[0].verdicts == {"oom": "pass", "slots": "pass"}
    assert snap.setup["config"]["parallel"] == 4 and snap.machine["host"] == "ci-1"


def test_the_same_run_does_not_regress() -> None:
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(report(BASE)))
    assert not comparison.regressed and comparison.rows
    assert not comparison.warnings and not comparison.changes
    assert "vramcap gate: no regression" in format_comparison(comparison)


def test_a_speedup_drop_beyond_threshold_and_noise_regresses() -> None:
    # Now every round runs 1.1x: down 0.4 from 1.5; allowed max(10% of 1.5, (0.286 + 0) / 2) = 0.15.
    now = report([(2.2, 2.0)] * 3)
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(now))
    (row,) = [r for r in comparison.rows if r.metric == "speedup"]
    assert row.allowance == pytest.approx(0.15) and row.regressed
    assert comparison.regressed
    table = format_comparison(comparison)
    assert "REGRESSED" in table and "vramcap gate: 1 metric(s) and 0 verdict(s) regressed" in table


def test_a_drop_within_the_rounds_spread_is_noise() -> None:
    # The baseline's rounds ran 1.0x to 2.0x: spread 1.0, so a median 0.4 lower (27%) is within half of it.
    base = [(2.0, 2.0), (3.0, 2.0), (4.0, 2.0)]
    comparison = compare(snapshot_of(report(base)), snapshot_of(report([(2.2, 2.0)] * 3)))
    (row,) = [r for r in comparison.rows if r.metric == "speedup"]
    assert row.allowance == pytest.approx(0.5) and not row.regressed


def test_latency_regresses_upwards_and_only_gated_metrics_fail() -> None:
    slower = report(BASE, ttft=0.3)  # +50% TTFT, over ttft_p95:20%
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(slower))
    regressed = {row.metric for row in comparison.regressions}
    assert regressed == {"ttft_p95"}  # ttft_p50 moved as much, but is not gated by default
    assert compare(snapshot_of(report(BASE)), snapshot_of(slower), compare_fail("ttft_p95:60%")).regressed is False
    assert compare(snapshot_of(report(BASE)), snapshot_of(slower), compare_fail("ttft_p95:0.2")).regressed is False


def test_faster_is_never_a_regression() -> None:
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(report([(6.0, 2.0)] * 3, ttft=0.1)))
    assert not comparison.regressed
    assert all(row.worse_by < 0 for row in comparison.rows if row.metric in ("speedup", "ttft_p95"))


def test_a_verdict_that_passed_and_fails_now_always_fails_the_gate() -> None:
    failing = [Verdict(name="oom", outcome="fail", summary="died"), PASS_ALL[1]]
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(report(BASE, verdicts=failing)))
    assert comparison.regressed and not comparison.regressions
    assert comparison.flips == ["pair: oom passed in the baseline and fails now"]


def test_peak_vram_is_compared_for_the_run() -> None:
    comparison = compare(snapshot_of(report(BASE, peak=10_000)), snapshot_of(report(BASE, peak=10_300)))
    (row,) = [r for r in comparison.rows if r.metric == "peak_vram"]
    assert row.scenario == RUN_ROW and row.allowance == pytest.approx(200) and row.regressed  # 2% of 10000


def test_other_machine_or_profile_warns_and_a_changed_model_is_listed() -> None:
    comparison = compare(snapshot_of(report(BASE)),
                         snapshot_of(report(BASE, cpu="EPYC", profile="16gb", model="qwen2.5-7b")))
    assert "different cpu 'x' -> 'EPYC'" in comparison.warnings
    assert "different profile 'rtx4080' -> '16gb'" in comparison.warnings
    assert comparison.changes == ["model 'qwen2.5-14b' -> 'qwen2.5-7b'"]
    assert not comparison.regressed  # warned about, not failed


def test_scenarios_in_only_one_run_are_noted() -> None:
    other = ScenarioResult.of("solo", "scenarios/solo.yaml::solo", scenario_run(BASE), None, PASS_ALL)
    comparison = compare(snapshot_of(report(BASE, extra=(other,))), snapshot_of(report(BASE)))
    assert comparison.notes[0] == "solo: in the baseline, not run now" and not comparison.regressed


def test_a_run_that_never_ran_has_no_metrics_to_compare() -> None:
    never = ScenarioResult.of("pair", "scenarios/pair.yaml::pair", None, None,
                              [Verdict(name="oom", outcome="fail", summary="no start")])
    data = report(BASE).model_copy(update={"scenarios": [never]})
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(data))
    assert comparison.rows == [] and comparison.regressed  # the oom verdict flipped


# ------------------------------------------------------------------ files


def test_baseline_and_report_files_load_as_snapshots(tmp_path: Path) -> None:
    path = write_baseline(snapshot_of(report(BASE), name="main"), tmp_path / "b" / "main.json")
    baseline = load_snapshot(path)
    assert baseline.name == "main" and baseline.scenarios[0].metrics["speedup"].median == pytest.approx(1.5)
    report_path = write_report(report(BASE), tmp_path / "reports")
    assert report_path.with_suffix(".html").is_file() and report_path.with_suffix(".md").is_file()
    from_report = load_snapshot(report_path)
    assert compare(baseline, from_report).rows and not compare(baseline, from_report).regressed


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not JSON"),
    ('{"kind": "vramcap-baseline", "baseline_version": 99}', "baseline_version 99"),
    ('{"kind": "vramcap-baseline", "baseline_version": 1, "scenarios": 3}', "not a valid vramcap baseline"),
    ('[1, 2]', "neither a vramcap baseline nor a vramcap run report"),
])
def test_bad_baseline_files_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_snapshot(path)
    assert "\n" not in str(info.value)


def test_missing_baseline_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_snapshot(tmp_path / "nope.json")


# ---------------------------------------------------------------- parsers


def test_compare_fail_expressions() -> None:
    assert compare_fail("speedup:10%, peak_vram:200") == (("speedup", 10.0, True), ("peak_vram", 200.0, False))
    assert compare_fail("speedup:10%,speedup:5%") == (("speedup", 5.0, True),)
    for bad in ("speedup", "latency:5%", "speedup:-5%", "speedup:abc%", ""):
        with pytest.raises(ValueError):
            compare_fail(bad)


def test_baseline_names_and_paths() -> None:
    assert baseline_name("main") == "main" and baseline_name("runs/main.json") == "runs/main.json"
    for bad in ("../x", "a/b", "", "-x"):
        with pytest.raises(ValueError):
            baseline_name(bad)


def test_plan_change() -> None:
    assert plan_change("ctx=16384") == ("ctx_per_agent", 16384)
    assert plan_change("--kv-cache=q8_0") == ("kv_cache", "q8_0")
    for bad in ("ctx", "ctx=zero", "color=red"):
        with pytest.raises(ValueError):
            plan_change(bad)


# ------------------------------------------------------------ accumulating runs


def test_saving_again_adds_the_run_and_keeps_the_last_ones() -> None:
    from pytest_vramcap.report.snapshot import add_run

    runs = [snapshot_of(report([(s, 2.0)] * 3), name="main") for s in (2.2, 2.6, 3.0, 3.4)]  # 1.1x ... 1.7x
    baseline = runs[0]
    for newer in runs[1:]:
        baseline, note = add_run(baseline, newer, keep=3)
        assert note is None
    assert baseline.runs == 3
    assert baseline.scenarios[0].metrics["seq_wall"].runs == [[2.6] * 3, [3.0] * 3, [3.4] * 3]  # the oldest dropped
    speedup = baseline.scenarios[0].metrics["speedup"]
    assert speedup.median == pytest.approx(1.5) and speedup.noise == pytest.approx(0.4)  # the runs' drift
    # Identical runs moved 1.3x-1.7x: a run at 1.35x is within that (allowed 0.2), though 10% under the median.
    now = snapshot_of(report([(2.7, 2.0)] * 3))
    assert compare(baseline, now).regressed is False
    assert compare(runs[-1], now).regressed is True  # the last run alone could not know


def test_another_setup_or_machine_replaces_the_baseline() -> None:
    from pytest_vramcap.report.snapshot import add_run

    ours = snapshot_of(report(BASE))
    replaced, note = add_run(ours, snapshot_of(report(BASE, cpu="EPYC")), keep=5)
    assert replaced.runs == 1 and note == "the baseline's machine differs: it was replaced, not added to"
    assert add_run(ours, snapshot_of(report(BASE, model="qwen2.5-7b")), keep=5)[0].runs == 1
    # A CI runner with a new host name each job is the same machine.
    assert add_run(ours, snapshot_of(report(BASE, host="runner-8f2k")), keep=5)[0].runs == 2
    assert add_run(ours, snapshot_of(report(BASE)), keep=1)[0].runs == 1  # keep 1: always replaced


def test_a_one_run_baseline_says_so() -> None:
    comparison = compare(snapshot_of(report(BASE)), snapshot_of(report(BASE)))
    assert any("the baseline holds one run" in note for note in comparison.notes)


def test_one_stalled_round_does_not_blind_the_gate() -> None:
    from pytest_vramcap.report.snapshot import add_run

    baseline = snapshot_of(report(BASE), name="main")
    for rounds in ([(3.0, 2.0)] * 3, [(3.0, 2.0)] * 3, [(3.0, 2.0), (3.0, 2.0), (30.0, 2.0)]):  # 15x: a stall
        baseline, _ = add_run(baseline, snapshot_of(report(rounds)), keep=5)
    speedup = baseline.scenarios[0].metrics["speedup"]
    # The median run's spread of rounds: (0.286 + 0) / 2; the stall's 13.5 and the 15x round are outvoted.
    assert max(speedup.values) == 15.0 and speedup.noise == pytest.approx(0.1432, abs=1e-4)
    assert compare(baseline, snapshot_of(report([(2.4, 2.0)] * 3))).regressed  # 1.2x: 20% down is caught


def test_a_verdict_that_was_not_judged_and_fails_now_is_a_flip() -> None:
    na = [*PASS_ALL, Verdict(name="parallel_speedup", outcome="n/a", summary="no minimum")]
    failing = [*PASS_ALL, Verdict(name="parallel_speedup", outcome="fail", summary="the runs did not complete"),
               Verdict(name="slo:ttft_p95_s", outcome="fail", summary="slow")]
    comparison = compare(snapshot_of(report(BASE, verdicts=na)), snapshot_of(report(BASE, verdicts=failing)))
    assert comparison.flips == ["pair: parallel_speedup did not fail in the baseline and fails now",
                                "pair: slo:ttft_p95_s did not fail in the baseline and fails now"]


def test_a_server_that_died_this_time_fails_the_gate() -> None:
    died = report(BASE).model_copy(update={"session_verdicts": [Verdict(name="oom", outcome="fail", summary="died")]})
    assert compare(snapshot_of(report(BASE)), snapshot_of(died)).flips == [
        "the run: oom did not fail in the baseline and fails now"]


def test_a_subset_run_keeps_the_other_scenarios_history() -> None:
    from pytest_vramcap.report.snapshot import add_run

    other = ScenarioResult.of("solo", "scenarios/solo.yaml::solo", scenario_run(BASE), None, PASS_ALL)
    both = snapshot_of(report(BASE, extra=(other,)), name="main")
    kept, note = add_run(both, snapshot_of(report(BASE)), keep=5)
    assert [s.name for s in kept.scenarios] == ["pair", "solo"] and kept.runs == 2
    assert kept.scenario("solo").metrics["speedup"].runs == both.scenario("solo").metrics["speedup"].runs
    assert note == "kept the history of scenarios this run did not run: solo"


def test_an_empty_metric_in_a_baseline_is_refused(tmp_path: Path) -> None:
    data = snapshot_of(report(BASE), name="main").model_dump()
    data["scenarios"][0]["metrics"]["speedup"]["runs"] = [[]]
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="not a valid vramcap baseline"):
        load_snapshot(path)
