"""Several models in one pytest run: one real llama-server per model role, agents that name their model, and
retrievals from an embedding model, judged per model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SCENARIO = """\
name: two-models
steps:
  - name: answer
    agents:
      - {role: writer, model: chat, retrieve: embed, retrieve_tokens: 8, turns: 2, turn_tokens: 16,
         prompt: "Write a line.", max_tokens: 8}
      - {role: critic, model: critic, retrieve: embed, retrieve_tokens: 8, prompt: "Judge a line.", max_tokens: 8}
"""


def _project(pytester: pytest.Pytester, scenario: str = SCENARIO) -> None:
    pytester.makeini("[pytest]\n")
    pytester.mkdir("scenarios")
    pytester.path.joinpath("scenarios/two-models.yaml").write_text(scenario)


def test_two_models_run_on_two_servers_and_are_judged_each(pytester: pytest.Pytester, small_model: Path,
                                                           tiny_embed_model: Path) -> None:
    _project(pytester)
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        "--vram-profile=16gb", f"--vramcap-model=chat={small_model}", f"--vramcap-model=critic={small_model}",
        f"--vramcap-model=embed={tiny_embed_model}",
        "--vramcap-agents=2", "--vramcap-ctx=1024", f"--vramcap-report-dir={reports}", "--vramcap-rounds=1",
        "-p", "no:cacheprovider", "scenarios", timeout=600)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    report = json.loads(next(reports.glob("vramcap-*.json")).read_text())
    servers = report["engine"]["models"]
    assert list(servers) == ["chat", "critic", "embed"]
    assert len({server["url"] for server in servers.values()}) == 3
    verdicts = {v["name"]: v for v in report["scenarios"][0]["verdicts"]}
    assert verdicts["resident"]["outcome"] == "pass"
    assert verdicts["resident"]["summary"].startswith("chat: ") and "; embed: " in verdicts["resident"]["summary"]
    assert verdicts["slots"]["summary"] == ("chat: 2 slot(s) for at most 1 concurrent agents; "
                                            "critic: 2 slot(s) for at most 1 concurrent agents")
    assert verdicts["slots"]["outcome"] == "pass" and verdicts["context"]["outcome"] == "pass"
    requests = [r for mode in ("sequential", "parallel") for r in report["scenarios"][0][mode]["requests"]]
    embeddings = [r for r in requests if r["endpoint"] == "embeddings"]
    chats = [r for r in requests if r["endpoint"] == "chat"]
    # Before each of 3 answers per pass (writer's 2 turns, critic's 1), one retrieval, on the embedding server.
    assert len(embeddings) == len(chats) == 6
    assert all(r["model"] == "embed" and r["e2e_s"] > 0 and r["ttft_s"] is None and r["prompt_tokens"]
               for r in embeddings)
    assert sorted((r["label"], r["model"]) for r in chats if r["turn"] == 1) == [
        ("answer.critic", "critic"), ("answer.critic", "critic"), ("answer.writer", "chat"), ("answer.writer", "chat")]
    assert report["scenarios"][0]["parallel"]["summary"]["embed_s"]["n"] == 3


def test_an_agent_naming_a_model_the_run_has_not_is_a_usage_error(pytester: pytest.Pytester,
                                                                   small_model: Path) -> None:
    _project(pytester)
    result = pytester.runpytest_subprocess("--vram-profile=16gb", f"--vramcap-model=chat={small_model}",
                                           "-p", "no:cacheprovider", "scenarios")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error, as any scenario that cannot run
    result.stdout.fnmatch_lines(["two-models.yaml: an agent names model critic, which this run has not "
                                 "(models: chat; give --vramcap-model critic=SRC)"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--vramcap-model=a=tiny", "--vramcap-model=a=small"], "--vramcap-model: role a is named twice"),
    (["--vramcap-model=a=tiny", "--vramcap-agents=b=2"], "no model has role b (roles: a)"),
    (["--vramcap-model=a=tiny", "--vramcap-model=b=tiny", "--vramcap-server-url=http://127.0.0.1:9"],
     "--vramcap-engine=url attaches to one model"),
    (["--vramcap-model=a=tiny", "--vramcap-model=b=tiny", "--vramcap-engine=ollama"],
     "roles a and b are both * Ollama runs one runner per model file*"),
])
def test_bad_model_sets_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    _project(pytester)
    result = pytester.runpytest_subprocess("--vram-profile=16gb", *args, "-p", "no:cacheprovider", "scenarios")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert "Traceback" not in result.stderr.str()
