"""`pytest --vram-profile=16gb --vramcap-engine=ollama` end to end: the plugin starts `ollama serve` (the
double in tests/ollama_double, which runs the real llama-server as Ollama >= 0.30 does), creates the plan's
model from our GGUF, preloads it, runs the scenario through Ollama's /v1 and judges /api/ps with the rest."""

from __future__ import annotations

import json
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



RAG = """\
name: rag
steps:
  - name: answer
    agents:
      - {role: writer, model: chat, retrieve: embed, retrieve_tokens: 8, prompt: "Write a line.", max_tokens: 8}
      - {role: critic, model: chat, retrieve: embed, retrieve_tokens: 8, prompt: "Judge a line.", max_tokens: 8}
"""


def test_two_models_share_one_ollama_and_both_stay_loaded(pytester: pytest.Pytester, small_model: Path,
                                                          tiny_embed_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat model and an embedding model on one `ollama serve` (the double): both created and preloaded with
    OLLAMA_MAX_LOADED_MODELS=2, retrievals answered by the embedding model's own runner, both judged resident."""
    write_scenarios(pytester, rag=RAG)
    binary = launcher(pytester.path)
    reports = pytester.path / "reports"
    for key, value in {"VRAMCAP_OLLAMA": str(binary), "OLLAMA_MODELS": str(pytester.path / "store"),
                       "LLAMA_ARG_REPACK": "0", "LLAMA_ARG_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess(
        "--vram-profile=16gb", "--vramcap-engine=ollama", f"--vramcap-model=chat={small_model}",
        f"--vramcap-model=embed={tiny_embed_model}", "--vramcap-agents=chat=2", "--vramcap-ctx=1024",
        f"--vramcap-report-dir={reports}", "--vramcap-rounds=1", "-p", "no:cacheprovider", "scenarios",
        timeout=600)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([f"vramcap: starting {binary} serve on *; model *-chat-vramcap",
                                 "vramcap: adding a model to the same Ollama at *; model *-embed-vramcap"])
    data = json.loads(next(reports.glob("vramcap-*.json")).read_text())
    models = data["engine"]["models"]
    assert len({model["url"] for model in models.values()}) == 1
    assert models["chat"]["runner_model_file"] != models["embed"]["runner_model_file"]  # two runners
    assert models["embed"]["served"]["context_length"] == data["plan"]["model_set"]["models"]["embed"]["config"][
        "ctx_per_agent"]
    verdicts = {v["name"]: v for v in data["scenarios"][0]["verdicts"]}
    assert verdicts["resident"]["outcome"] == "pass", verdicts["resident"]
    assert verdicts["served_as_planned"]["outcome"] == "pass", verdicts["served_as_planned"]
    requests = [r for mode in ("sequential", "parallel") for r in data["scenarios"][0][mode]["requests"]]
    assert {(r["endpoint"], r["model"]) for r in requests} == {("embeddings", "embed"), ("chat", "chat")}
    assert all(r["error"] is None for r in requests)
    assert processes_with(str(pytester.path)) == []
