"""The scenario schema and prompt templates (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vramcap.errors import ScenarioError
from pytest_vramcap.load.scenario.schema import load_scenario, render_prompt

SHIPPED = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert (scenario.max_width is not None and scenario.max_width >= 2) or scenario.graph is not None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_width_count_and_name_from_the_file(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, "inputs: {task: t}\nsteps:\n"
                                             "  - {name: plan, agents: [{role: lead, prompt: '{task}'}]}\n"
                                             "  - {name: work, agents: [{role: a, prompt: '{plan.lead}'}, "
                                             "{role: b, prompt: '{plan.lead}'}]}\n"))
    assert (scenario.name, scenario.max_width, scenario.agent_count) == ("s", 2, 3)
    assert scenario.expect.slo.items() == []


@pytest.mark.parametrize("text, message", [
    ("steps: [unclosed\n", "not valid YAML"),
    ("- a list\n", "must be a mapping"),
    ("steps: []\n", "needs .steps. .a list of at least 1 step. or .graph."),
    ("steps:\n  - {name: s, agents: [{role: a, prompt: '{later.a}'}]}\n", "reads {later.a}, which is not an input"),
    ("steps:\n  - {name: s, agents: [{role: a, prompt: x}, {role: a, prompt: y}]}\n", "duplicate roles"),
    ("steps:\n  - {name: s, agents: [{role: a, prompt: x, max_token: 5}]}\n", "Extra inputs are not permitted"),
    ("expect: {slo: {ttft_p42_s: 1}}\nsteps:\n  - {name: s, agents: [{role: a, prompt: x}]}\n", "ttft_p42_s"),
])
def test_bad_scenarios_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as excinfo:
        load_scenario(write(tmp_path, text))
    assert "\n" not in str(excinfo.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "nope.yaml")


def test_references_are_cut_to_max_ref_chars() -> None:
    state = {"task": "t" * 10, "plan": {"lead": "p" * 10}}
    assert render_prompt("{task}/{plan.lead}", state, 4) == "tttt/pppp"
