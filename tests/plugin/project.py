"""A test project for pytester runs of the plugin: scenario files and what a run leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FANOUT = """
name: {name}
inputs: {{topic: capacity planning}}
max_ref_chars: 100
expect: {expect}
steps:
  - name: work
    agents:
{agents}
  - name: reduce
    agents:
      - {{role: merge, prompt: "merge {refs}", max_tokens: 8}}
"""


def scenario_yaml(name: str, agents: int = 2, max_tokens: int = 24, expect: str = "{}") -> str:
    lines = "\n".join(f"      - {{role: a{i}, prompt: 'angle {i} on {{topic}}', max_tokens: {max_tokens}}}"
                      for i in range(agents))
    refs = " ".join(f"{{work.a{i}}}" for i in range(agents))
    return FANOUT.format(name=name, expect=expect, agents=lines, refs=refs)


def write_scenarios(pytester: pytest.Pytester, **files: str) -> None:
    """Scenario YAML files, by stem, in a scenarios/ directory of the test project."""
    pytester.mkdir("scenarios")
    for stem, text in files.items():
        pytester.path.joinpath(f"scenarios/{stem}.yaml").write_text(text)


def report(pytester: pytest.Pytester) -> dict:
    reports = sorted((pytester.path / "reports").glob("vramcap-*.json"))
    assert len(reports) == 1
    return json.loads(reports[0].read_text())


def server_logs(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / "reports" / "logs").glob("llama-server-*.log"))
