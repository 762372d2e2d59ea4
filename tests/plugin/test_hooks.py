"""The hooks a conftest.py implements (plugin/hooks.py): machine info and the report, before anything is written."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

CONFTEST = '''
def pytest_vramcap_machine_info(config, machine_info):
    machine_info["runner"] = "gpu-runner-3"
    machine_info["cpu"] = machine_info["cpu"] + " (pinned)"

def pytest_vramcap_update_report(config, report):
    report.extra["commit"] = "abc123"
    report.extra["scenarios_seen"] = len(report.scenarios)
'''


def test_hooks_extend_the_machine_info_and_the_report(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    [path] = (pytester.path / "reports").glob("vramcap-*.json")
    data = json.loads(path.read_text())
    assert data["machine"]["runner"] == "gpu-runner-3" and data["machine"]["cpu"].endswith(" (pinned)")
    assert data["extra"] == {"commit": "abc123", "scenarios_seen": 0}
    assert "abc123" in path.with_suffix(".html").read_text()  # the HTML embeds the same JSON


def test_an_unknown_vramcap_hook_is_refused_by_pytest(pytester: pytest.Pytester) -> None:
    """The specs are registered, so pytest checks implementations against them: a misspelt one is an error."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest("def pytest_vramcap_machine_info(config, machine_info, typo):\n    pass\n")
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "-p", "no:cacheprovider")
    assert result.ret != pytest.ExitCode.OK
    assert "typo" in result.stdout.str() + result.stderr.str()
