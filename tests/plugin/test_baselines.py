"""The regression gate end to end: real llama-server runs save a baseline, compare with it, and write the
HTML, Markdown and JUnit outputs.

No outcome here rests on a clock: a run compared with its own baseline uses thresholds no timing can
cross, and the run that must regress is compared with a baseline edited to claim a 1000x speedup.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import needs_llama_server
from tests.plugin.project import report, scenario_yaml, write_scenarios

pytest_plugins = ["pytester"]

# Any drop of the speedup is under 1000% of it, and no TTFT moves by 10^6 %: the gate cannot fail on timing.
LOOSE = "--vramcap-compare-fail=speedup:1000%,ttft_p95:1000000%"


@needs_llama_server
def test_save_then_compare_then_regress(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair", max_tokens=8))
    summary = pytester.path / "step-summary.md"
    saved = run("--vram-profile=16gb", "scenarios", "--vramcap-save-baseline=main", "--junitxml=junit.xml",
                env={"GITHUB_STEP_SUMMARY": str(summary)})
    saved.assert_outcomes(passed=1)
    baseline_file = pytester.path / ".vramcap" / "baselines" / "main.json"
    saved.stdout.fnmatch_lines([f"vramcap baseline saved: {baseline_file} (1 run)", "vramcap report: *.json",
                                "vramcap report: *.html*", f"vramcap summary appended to {summary}"])
    baseline = json.loads(baseline_file.read_text())
    assert baseline["kind"] == "vramcap-baseline" and baseline["name"] == "main"
    assert set(baseline["scenarios"][0]["metrics"]) >= {"speedup", "seq_wall", "par_wall", "ttft_p95", "output_tps"}
    assert baseline["setup"]["config"]["ctx_per_agent"] == 1024 and baseline["machine"]["cpus"]
    assert summary.read_text().startswith("## vramcap: PASSED")
    first = report(pytester)
    html = Path(next((pytester.path / "reports").glob("vramcap-*.html"))).read_text()
    assert '<script id="vramcap-data"' in html and first["scenarios"][0]["name"] in html
    properties = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert float(properties["vramcap_speedup"]) > 0 and properties["vramcap_verdict_oom"] == "pass"
    assert "vramcap_scenario" not in properties  # the whole result stays out of JUnit XML

    same = run("--vram-profile=16gb", "scenarios", "--vramcap-compare=main", LOOSE)
    same.assert_outcomes(passed=1)
    assert same.ret == pytest.ExitCode.OK
    same.stdout.fnmatch_lines(["vramcap: compared with baseline main*", "*pair*speedup*ok",
                               "vramcap gate: no regression"])

    baseline["scenarios"][0]["metrics"]["speedup"]["runs"] = [[1000.0]]
    (pytester.path / "fast.json").write_text(json.dumps(baseline))
    # Only the speedup is gated here (10%): a TTFT may move on a busy machine, a 1000x speedup cannot be met.
    slower = run("--vram-profile=16gb", "scenarios", "--vramcap-compare=fast.json",
                 "--vramcap-compare-fail=speedup:10%")
    slower.assert_outcomes(passed=1)  # every verdict passed: the gate alone fails the run
    assert slower.ret == pytest.ExitCode.TESTS_FAILED
    slower.stdout.fnmatch_lines(["*pair*speedup*1000x*REGRESSED",
                                 "vramcap gate: 1 metric(s) and 0 verdict(s) regressed"])
    reports = sorted((pytester.path / "reports").glob("vramcap-*.json"))
    last = json.loads(reports[-1].read_text())
    assert last["passed"] is False and last["comparison"]["regressed"] is True


@needs_llama_server
def test_a_failing_run_is_not_saved(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair", max_tokens=8))
    result = run("--vram-profile=16gb", "scenarios", "--vramcap-min-speedup=1000", "--vramcap-save-baseline=main")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["vramcap baseline NOT saved to *main.json: the run failed*"])
    assert not (pytester.path / ".vramcap").exists()


@needs_llama_server
def test_a_users_test_lands_in_the_report(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.path.joinpath("pair.yaml").write_text(scenario_yaml("pair", max_tokens=8))
    pytester.makepyfile(test_agents="""
        def test_pair(vramcap_fanout):
            vramcap_fanout.check(vramcap_fanout.run("pair.yaml"))
    """)
    run("--vram-profile=16gb", "test_agents.py", "--vramcap-save-baseline=mine").assert_outcomes(passed=1)
    (scenario,) = report(pytester)["scenarios"]
    assert scenario["name"] == "pair" and scenario["nodeid"] == "test_agents.py::test_pair"
    saved = json.loads((pytester.path / ".vramcap" / "baselines" / "mine.json").read_text())
    assert saved["scenarios"][0]["nodeid"] == "test_agents.py::test_pair"


def test_a_missing_baseline_is_a_usage_error_before_any_server(pytester: pytest.Pytester) -> None:
    write_scenarios(pytester, pair=scenario_yaml("pair"))
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "--vramcap-compare=nope", "scenarios")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vramcap-compare: no baseline at *nope.json (save one with "
                                 "--vramcap-save-baseline=nope)*"])
    assert not (pytester.path / "reports").exists()


@pytest.mark.parametrize("option, message", [
    ("--vramcap-compare-fail=speed:5%", "use METRIC:PERCENT% or METRIC:AMOUNT"),
    ("--vramcap-save-baseline=../x", "a name of letters, digits"),
])
def test_bad_gate_options_are_usage_errors(pytester: pytest.Pytester, option: str, message: str) -> None:
    result = pytester.runpytest_subprocess("--vram-profile=16gb", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert "Traceback" not in result.stderr.str()


def test_a_corrupt_baseline_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("broken.json").write_text("{")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "--vramcap-compare=broken.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*broken.json is not JSON*"])
    assert "Traceback" not in result.stderr.str()
