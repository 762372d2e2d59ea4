"""Writes nobody asked for: a run writes its report only when something ran, and where pytest would put it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

SCENARIO = "name: s\nsteps:\n  - {name: w, agents: [{role: a, prompt: hi, max_tokens: 4}]}\n"


def project(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.mkdir("scenarios")
    pytester.path.joinpath("scenarios/s.yaml").write_text(SCENARIO)


def test_collect_only_writes_nothing(pytester: pytest.Pytester) -> None:
    project(pytester)
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "--collect-only", "scenarios")
    assert result.ret == pytest.ExitCode.OK
    assert not (pytester.path / "reports").exists()


def test_a_run_stopped_at_collection_writes_nothing(pytester: pytest.Pytester) -> None:
    project(pytester)
    pytester.path.joinpath("scenarios/bad.yaml").write_text("steps: [unclosed\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "scenarios")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not (pytester.path / "reports").exists()


def test_the_default_report_dir_is_under_the_rootdir(pytester: pytest.Pytester) -> None:
    """Started from a subdirectory, a run puts reports/ beside the ini file (the rootdir), not in the cwd."""
    project(pytester)
    sub = pytester.mkdir("sub")
    sub.joinpath("test_ok.py").write_text("def test_ok():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--vram-profile=16gb", "-p", "no:cacheprovider",
                           "test_ok.py"], cwd=sub, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((pytester.path / "reports").glob("vramcap-*.json")) and not (sub / "reports").exists()


@pytest.mark.parametrize("report_dir, message", [("a-file", "is not a directory"), ("x" * 5000, "File name too long")])
def test_a_report_dir_that_cannot_be_one(pytester: pytest.Pytester, report_dir: str, message: str) -> None:
    project(pytester)
    pytester.path.joinpath("a-file").write_text("")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", f"--vramcap-report-dir={report_dir}", "scenarios")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--vramcap-report-dir*{message}*"])
    assert "Traceback" not in result.stderr.str() and "INTERNALERROR" not in result.stderr.str()
