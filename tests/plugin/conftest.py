"""Fixtures of the plugin's end-to-end runs (pytester, a real llama-server, a 2-layer synthetic model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vramcap.model.synth import write_gguf


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf("tiny", "F16", tmp_path_factory.mktemp("model") / "tiny2.gguf", layers=2)


@pytest.fixture
def run(pytester: pytest.Pytester, small_model: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def run_pytest(*args: str, env: dict[str, str] | None = None, rounds: int | None = 1) -> pytest.RunResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)  # the subprocess inherits it; undone after the test
        # One round each: these tests check verdicts and plumbing, not timing (rounds have their own tests, which
        # pass rounds=None for the plugin's own choice).
        return pytester.runpytest_subprocess(
            f"--vramcap-model={small_model}", "--vramcap-ctx=1024", f"--vramcap-report-dir={pytester.path / 'reports'}",
            *([f"--vramcap-rounds={rounds}"] if rounds is not None else []), "-p", "no:cacheprovider", *args,
            timeout=600)

    return run_pytest
