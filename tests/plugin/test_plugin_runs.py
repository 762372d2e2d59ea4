"""The plugin end to end with pytester: real llama-server runs that pass, and runs failing each verdict.

Every run starts a real llama-server (CPU) with a 2-layer synthetic model. No outcome
here rests on a clock: passing runs set no speedup minimum, and the one failing on
speed asks for 1000x. A 3x minimum with one slot was not enough: a busy neighbour once
slowed a 50 ms sequential pass tenfold and the "impossible" speedup passed.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.helpers import LLAMA_SERVER, needs_llama_server
from tests.plugin.project import report, scenario_yaml, server_logs, write_scenarios

pytest_plugins = ["pytester"]

pytestmark = needs_llama_server

def test_passing_run_writes_the_report(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair"))
    result = run("--vram-profile=16gb", "scenarios")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["vramcap: profile 16gb*fits", "*pair*pass*n/a*PASSED*", "vramcap report: *.json"])
    data = report(pytester)
    assert data["schema_version"] == 1 and data["passed"] is True
    scenario = data["scenarios"][0]
    assert scenario["name"] == "pair" and scenario["speedup"] > 0
    assert {v["name"]: v["outcome"] for v in scenario["verdicts"]} == {
        "oom": "pass", "cpu_offload": "n/a", "served_as_planned": "n/a", "resident": "pass",
        "client_options": "n/a",
        "output_budget": "n/a", "slots": "pass", "context": "pass", "prompt_cache": "n/a", "parallel_speedup": "n/a"}
    # the prompt cache is on, but no agent held a conversation
    assert scenario["prompt_cache"] is True and scenario["turns"] == []
    assert len(scenario["parallel"]["requests"]) == 3
    assert all(r["n_out"] in (24, 8) for r in scenario["parallel"]["requests"])
    assert data["engine"]["exit_code"] is not None  # stopped at the end of the run
    assert data["plan"]["config"]["parallel"] == 4
    assert len(server_logs(pytester)) == 1


def test_plan_over_budget_fails_the_oom_verdict(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair"))
    result = run("--vram-profile=256MiB", "scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*DOES NOT FIT*", "*[[]FAIL[]] oom: *", "*plan: * MiB at peak + 1024 MiB fit margin*"])
    assert report(pytester)["passed"] is False


def test_too_few_slots_fail_without_a_clock(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    # No minimum speedup is set: the slot shortage alone fails the scenario, whatever the timing.
    write_scenarios(pytester, four=scenario_yaml("four", agents=4, max_tokens=8))
    result = run("--vram-profile=16gb", "--vramcap-agents=1", "scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]FAIL[]] slots: the server has 1 slot(s) for 4 concurrent agents*",
                                 "*step work: 4 agents on 1 slot(s)*"])


def test_a_conversation_that_cannot_fit_its_first_turn_fails_before_a_server_starts(  # type: ignore[no-untyped-def]
        pytester: pytest.Pytester, run) -> None:
    write_scenarios(pytester, loop="system_tokens: 2000\nsteps:\n  - name: work\n    agents:\n"
                                   "      - {role: coder, prompt: go, turns: 3}\n")
    result = run("--vram-profile=16gb", "scenarios")  # 1024 tokens a slot
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]FAIL[]] context: agent work.coder would overflow its 1,024-token slot at turn 1 "
                                 "(about 2,* tokens)*"])
    assert "starting llama-server" not in result.stdout.str() + result.stderr.str()
    assert report(pytester)["scenarios"][0]["verdicts"][0]["name"] == "context"


def test_rounds_interleave_and_report_each_pass(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair", max_tokens=8))
    result = run("--vram-profile=16gb", "--vramcap-rounds=3", "scenarios")
    result.assert_outcomes(passed=1)
    scenario = report(pytester)["scenarios"][0]
    assert len(scenario["sequential"]["walls_s"]) == len(scenario["parallel"]["walls_s"]) == 3
    assert len(scenario["round_speedups"]) == 3 and len(scenario["parallel"]["requests"]) == 3 * 3
    assert scenario["speedup"] == sorted(scenario["round_speedups"])[1]  # the median round


def test_a_scenario_runs_the_rounds_its_verdicts_read_unless_rounds_are_asked_for(  # type: ignore[no-untyped-def]
        pytester: pytest.Pytester, run) -> None:
    # Any two agents beat a minimum of 0.01x: after two of three rounds the median's side cannot change. With no
    # minimum and no latency objective nothing reads a second round; a p95 objective reads all three.
    write_scenarios(pytester, pair=scenario_yaml("pair", max_tokens=8, expect="{min_speedup: 0.01}"),
                    plain=scenario_yaml("plain", max_tokens=8),
                    slo=scenario_yaml("slo", max_tokens=8, expect="{slo: {ttft_p95_s: 600}}"))

    def speedups() -> dict[str, int]:
        runs = {scenario["name"]: len(scenario["round_speedups"]) for scenario in report(pytester)["scenarios"]}
        for first in (pytester.path / "reports").glob("vramcap-*"):
            first.unlink()
        return runs

    run("--vram-profile=16gb", "scenarios", rounds=None).assert_outcomes(passed=3)
    pair = next(scenario for scenario in report(pytester)["scenarios"] if scenario["name"] == "pair")
    assert any("2 of 3 rounds" in line for verdict in pair["verdicts"] if verdict["name"] == "parallel_speedup"
               for line in verdict["evidence"])
    assert speedups() == {"pair": 2, "plain": 1, "slo": 3}
    run("--vram-profile=16gb", "--vramcap-save-baseline=every-round", "scenarios",
        rounds=None).assert_outcomes(passed=3)
    assert speedups() == {"pair": 3, "plain": 3, "slo": 3}  # the gate's allowances assume them all
    run("--vram-profile=16gb", "--vramcap-rounds=2", "scenarios").assert_outcomes(passed=3)
    assert speedups() == {"pair": 2, "plain": 2, "slo": 2}  # asked for: every one runs


def test_engine_that_crashes_fails_the_run(pytester: pytest.Pytester, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A real llama-server that is killed 2 s after it starts, mid-scenario.
    wrapper = tmp_path / "crashing-llama-server"
    wrapper.write_text(f'#!/bin/sh\n"{LLAMA_SERVER}" "$@" &\npid=$!\nsleep 2\nkill -9 $pid\nwait $pid\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    write_scenarios(pytester, long=scenario_yaml("long", agents=2, max_tokens=4000))
    result = run("--vram-profile=16gb", "--vramcap-ctx=8192", "scenarios",
                 env={"VRAMCAP_LLAMA_SERVER": str(wrapper)})
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*[[]FAIL[]] oom: the server could not allocate its memory or died*",
                                 "*server: the process exited during the run (exit code *"])


@pytest.mark.parametrize("args, message", [
    (["--vram-profile=12potatoes"], "*unknown VRAM profile '12potatoes'*"),
    (["--vram-profile=16gb", "--vramcap-agents=0"], "*--vramcap-agents: must be a positive integer*"),
    (["--vram-profile=16gb", "--vramcap-kv-cache=q3"], "*--vramcap-kv-cache: must be one of*"),
    (["--vram-profile=16gb", "--vramcap-engine=url"], "*--vramcap-engine=url needs --vramcap-server-url*"),
    (["--vram-profile=16gb", "--vramcap-kv-cache=q8_0", "--vramcap-flash-attn=off"],
     "*q8_0 KV cache needs flash attention on*"),
    (["--vram-profile=16gb", "--vramcap-server-url=localhost"], "*must be an http(s) URL*"),
])
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, run, args: list[str],  # type: ignore[no-untyped-def]
                                            message: str) -> None:
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_missing_and_malformed_scenarios(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester)
    missing = run("--vram-profile=16gb", "scenarios/nope.yaml")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*file or directory not found: scenarios/nope.yaml*"])

    pytester.path.joinpath("scenarios/bad.yaml").write_text(
        "name: bad\nsteps:\n  - name: s\n    agents:\n      - {role: a, prompt: 'read {nowhere.x}'}\n")
    pytester.path.joinpath("scenarios/notyaml.yaml").write_text("steps: [unclosed\n")
    malformed = run("--vram-profile=16gb", "scenarios")
    assert malformed.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    malformed.stdout.fnmatch_lines(["*bad.yaml: invalid scenario: *reads {nowhere.x}, which is not an input*",
                                    "*notyaml.yaml: not valid YAML*"])
    assert not server_logs(pytester)  # nothing was started


def test_xdist_starts_exactly_one_server(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, **{name: scenario_yaml(name) for name in ("one", "two", "three")})
    pytester.makepyfile(test_server="""
        import httpx

        def test_server_is_shared(vramcap_server, vramcap_plan):
            assert httpx.get(vramcap_server.url + "/health").status_code == 200
            assert vramcap_plan.config.parallel == 4
    """)
    result = run("--vram-profile=16gb", "-n", "2", "scenarios", "test_server.py")
    result.assert_outcomes(passed=4)
    logs = server_logs(pytester)
    assert len(logs) == 1, logs
    assert "cleaning up before exit" in logs[0].read_text()  # stopped by the controller, once
    data = report(pytester)
    assert sorted(s["name"] for s in data["scenarios"]) == ["one", "three", "two"]


def test_python_tests_use_the_fixtures_marker_and_helpers(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    pytester.path.joinpath("pair.yaml").write_text(scenario_yaml("pair"))
    pytester.makepyfile(test_agents="""
        import pytest
        from pytest_vramcap import assert_no_cpu_offload, assert_no_oom, assert_parallel_speedup, assert_slo

        @pytest.mark.vramcap(slo={"ttft_p95_s": 600})
        def test_pair(vramcap_server, vramcap_plan, vramcap_fanout):
            run = vramcap_fanout.run("pair.yaml")
            vramcap_fanout.check(run)
            assert_no_oom(vramcap_server, vramcap_plan)
            assert_no_cpu_offload(vramcap_server)
            assert_slo(run, ttft_p95_s=600)
            assert run.speedup > 0

        def test_speedup_message(vramcap_fanout):
            run = vramcap_fanout.run("pair.yaml")
            with pytest.raises(AssertionError, match=r"parallel_speedup: .*x, minimum 1000.00x"):
                assert_parallel_speedup(run, 1000)

        @pytest.mark.vramcap(min_sped=2)
        def test_typo_in_marker(vramcap_fanout):
            pass
    """)
    result = run("--vram-profile=16gb", "test_agents.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*unknown arguments [[]'min_sped'[]]*"])


def test_the_load_gate_runs_locust_on_the_runs_server_and_fails_on_a_missed_slo(  # type: ignore[no-untyped-def]
        pytester: pytest.Pytester, run) -> None:
    pytester.path.joinpath("pair.yaml").write_text(scenario_yaml("pair"))
    pytester.makepyfile(test_load="""
        import sys
        import pytest

        @pytest.mark.vramcap(load_slo={"failure_ratio": 0})
        def test_holds(vramcap_load):
            outcome = vramcap_load.run("pair.yaml", users=2, graphs=2, run_time_s=300)
            vramcap_load.check(outcome)
            assert outcome.data["graphs"] >= 2 and outcome.data["summary"]["output_tokens"] > 0
            assert outcome.files["html"].is_file() and "locust" not in sys.modules  # Locust ran in a child

        @pytest.mark.vramcap(load_slo={"failure_ratio": 0})
        def test_misses(vramcap_load):
            outcome = vramcap_load.run("pair.yaml", users=1, graphs=1, run_time_s=300, slo={"output_tps": 1e9})
            vramcap_load.check(outcome)
    """)
    result = run("--vram-profile=16gb", "test_load.py", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=1)
    # The failure shows the load's numbers and each verdict with its evidence, the marker's SLO included.
    result.stdout.fnmatch_lines(["*AssertionError: pair: 1 users for * s, * graphs (0 failed), * requests*",
                                 "*PASS? slo:failure_ratio*", "*FAIL? slo:output_tps*at least 1e+09*"])
    assert len(server_logs(pytester)) == 1  # the session's server, started once
    # Both loads are in the run report, and their key numbers in JUnit XML (not the whole result).
    loads = {load["nodeid"]: load for load in report(pytester)["loads"]}
    assert loads["test_load.py::test_holds"]["passed"] and not loads["test_load.py::test_misses"]["passed"]
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="vramcap_load_verdict_slo:output_tps" value="fail"' in junit and 'name="vramcap_load"' not in junit
