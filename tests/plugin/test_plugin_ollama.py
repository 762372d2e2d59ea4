"""`pytest --vram-profile=16gb --vramcap-engine=ollama` end to end: the plugin starts `ollama serve` (the
double in tests/ollama_double, which runs the real llama-server as Ollama >= 0.30 does), creates the plan's
model from our GGUF, preloads it, runs the scenario through Ollama's /v1 and judges /api/ps with the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import needs_llama_server, processes_with
from tests.ollama_double import launcher
from tests.plugin.project import report, scenario_yaml, write_scenarios

pytest_plugins = ["pytester"]

pytestmark = needs_llama_server


def test_the_ollama_engine_runs_the_plan(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair"))
    binary = launcher(pytester.path)
    result = run("--vram-profile=16gb", "--vramcap-engine=ollama", "scenarios",
                 env={"VRAMCAP_OLLAMA": str(binary), "OLLAMA_MODELS": str(pytester.path / "store"),
                      "LLAMA_ARG_REPACK": "0"})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"vramcap: starting {binary} serve on *; model *-vramcap"])
    data = report(pytester)
    verdicts = {v["name"]: v for v in data["scenarios"][0]["verdicts"]}
    assert verdicts["served_as_planned"]["outcome"] == "pass"
    assert verdicts["oom"]["outcome"] == "pass" and verdicts["cpu_offload"]["outcome"] == "n/a"  # a CPU-only run
    engine = data["engine"]
    assert engine["kind"] == "ollama" and engine["started_by_us"] and engine["ollama_version"] == "0.33.0"
    assert engine["served"]["context_length"] == data["plan"]["config"]["ctx_per_agent"]
    assert processes_with(str(pytester.path)) == []  # ollama serve and its llama-server are gone


def test_a_plan_ollama_cannot_express_is_a_usage_error(pytester: pytest.Pytester, run) -> None:  # type: ignore[no-untyped-def]
    write_scenarios(pytester, pair=scenario_yaml("pair"))
    result = run("--vram-profile=16gb", "--vramcap-engine=ollama", "--vramcap-kv-unified", "scenarios",
                 env={"VRAMCAP_OLLAMA": str(launcher(pytester.path))})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vramcap-engine=ollama: Ollama always passes -np*"])
    assert not (Path(pytester.path) / "store").exists()
