"""``vramcap diagnose``: the verdicts of a log, with its exit codes (0 clean, 1 OOM or offload, 2 not a log)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vramcap.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["diagnose", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_clean_log_exits_0(h100_logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(h100_logs / "m00_q14.log"))
    assert code == 0
    assert "[PASS] oom" in out and "[PASS] cpu_offload" in out and "layers on the GPU: 49/49" in out


def test_moe_expert_offload_exits_1_with_the_evidence_as_json(h100_logs: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(h100_logs / "moe_qwen3_30b_fit_overflow.log"), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["oom"] is False and report["cpu_offload"] is True
    assert any("34 overflowing" in line for line in report["evidence"])
    assert report["buffers"]["host"]["model"] == 17447.91 and report["buffers"]["gpu"]["kv"] == 16368.0
    assert report["layers"] == {"offloaded": 49, "total": 49}
    assert report["fit"]["devices"][0]["overflowing"] == 34
    assert report["breakdown_at_exit_mib"]["self_mib"] == 22976


def test_the_model_makes_the_moved_amount_exact(h100_logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(h100_logs / "moe_qwen3_30b_fit_overflow.log"), "--json",
                       "--model", "qwen3-30b-a3b:Q4_K_M")
    assert code == 1
    report = json.loads(out)
    assert report["moved_mib"] == pytest.approx(17524.43 - 6305.92, abs=0.01)
    assert report["layers_moved"] == list(range(15, 48))


def test_an_oom_at_load_exits_1(h100_logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(h100_logs / "x_oom_fitoff.log"))
    assert code == 1 and "[FAIL] oom" in out and "cudaMalloc failed: out of memory" in out


@pytest.mark.parametrize("content", [b"hello world\n", bytes(range(256)) * 64, b""])
def test_a_file_that_is_not_a_llama_log_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     content: bytes) -> None:
    path = tmp_path / "server.log"
    path.write_bytes(content)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "not a llama.cpp log" in err


def test_a_missing_file_or_a_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for target, message in ((tmp_path / "absent.log", "cannot be read"), (tmp_path, "is a directory")):
        code, _, err = run(capsys, str(target))
        assert code == 2 and message in err and err.count("\n") == 1
