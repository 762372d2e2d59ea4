"""The `vramcap` command as users run it: a subprocess, its output and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import vramcap


def test_plan_json_contract() -> None:
    result = vramcap("plan", "--model", "qwen2.5-14b:Q4_K_M", "--profile", "rtx4080", "--agents", "4",
                     "--ctx-per-agent", "8192", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("parallel", "ctx_per_agent", "ctx_total", "kv_cache", "flash_attn", "ubatch", "gpu_layers"):
        assert key in data["config"]
    for key in ("model_mib", "context_mib", "compute_mib", "overhead_mib", "total_mib"):
        assert key in data["memory"]["gpu"]
    for key in ("model_mib", "context_mib", "compute_mib"):
        assert key in data["memory"]["cpu"]
    assert data["fits"] is True and data["headroom_mib"] > 1024
    assert set(data["ollama"]) >= {"env", "modelfile", "create_request"}
    assert data["llama_server"]["args"][:2] == ["-m", "qwen2.5-14b-Q4_K_M.gguf"]


def test_plan_table_by_default() -> None:
    result = vramcap("plan", "--model", "qwen2.5-14b", "--profile", "16gb", "--agents", "4", "--ctx-per-agent", "8192")
    assert result.returncode == 0
    assert "FITS" in result.stdout and "OLLAMA_NUM_PARALLEL=4" in result.stdout
    assert "context (KV cache)   6144.00" in result.stdout


def test_does_not_fit_exits_1_with_alternatives() -> None:
    result = vramcap("plan", "--model", "qwen2.5-14b", "--profile", "16gb", "--agents", "4",
                     "--ctx-per-agent", "32768")
    assert result.returncode == 1
    assert "DOES NOT FIT" in result.stdout and "what would fit instead" in result.stdout


def test_plan_from_a_gguf_file(tmp_path: Path) -> None:
    from pytest_vramcap.model.synth import write_sparse_gguf

    path = write_sparse_gguf("qwen2.5-7b", "Q4_K_M", tmp_path / "q7.gguf")
    result = vramcap("plan", "--model", str(path), "--profile", "h100-80gb", "--agents", "2",
                     "--ctx-per-agent", "32768", "--flash-attn", "off", "--json")
    data = json.loads(result.stdout)
    assert data["memory"]["gpu"]["model_mib"] == 4168.09  # m09_q7.log: CUDA0 model buffer
    assert data["memory"]["gpu"]["context_mib"] == 3584.0


@pytest.mark.parametrize("args, message", [
    (["plan", "--model", "qwen2.5-14b", "--profile", "17potatoes"], "unknown VRAM profile"),
    (["plan", "--model", "qwen2.5-14b", "--profile", "0gb"], "sizes must be positive"),
    (["plan", "--model", "qwen2.5-14b", "--agents", "-2"], "must be a positive integer"),
    (["plan", "--model", "qwen2.5-14b", "--ctx-per-agent", "0"], "must be a positive integer"),
    (["plan", "--model", "/nonexistent/model.gguf"], "does not exist"),
    (["plan", "--model", "llama9-400b"], "unknown model shape"),
    (["plan", "--model", "qwen2.5-14b", "--kv-cache", "q8_0", "--flash-attn", "off"], "needs flash attention on"),
    (["plan", "--model", "qwen2.5-14b", "--kv-cache", "q3"], "--kv-cache: must be one of"),
    (["plan", "--model", "qwen2.5-14b", "--gpu-layers", "500"], "exceeds the model"),
    (["plan", "--model", "ollama:qwen2.5:14b", "--ollama-url", "http://127.0.0.1:9"], "cannot reach Ollama"),
    (["plan"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = vramcap(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vramcap: error:") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_non_gguf_truncated_and_unknown_architecture_files(tmp_path: Path) -> None:
    text = tmp_path / "readme.gguf"
    text.write_text("not a model")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 20)
    import gguf
    import numpy as np

    unknown = tmp_path / "foo.gguf"
    writer = gguf.GGUFWriter(str(unknown), "foo")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for path, message in ((text, "not a GGUF file"), (truncated, "truncated or corrupt"),
                          (unknown, "unknown architecture 'foo'")):
        result = vramcap("plan", "--model", str(path))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_profiles_and_shapes_listings() -> None:
    profiles = vramcap("profiles")
    assert profiles.returncode == 0 and "h100-80gb" in profiles.stdout and "measured" in profiles.stdout
    shapes = vramcap("shapes")
    assert shapes.returncode == 0 and "qwen3-30b-a3b" in shapes.stdout


def test_plan_compare_two_configs_side_by_side() -> None:
    base = ("plan", "--model", "qwen2.5-14b:Q4_K_M", "--profile", "rtx4080", "--agents", "4", "--ctx-per-agent", "8192")
    longer = vramcap(*base, "--compare", "ctx=16384")
    assert longer.returncode == 1, longer.stderr  # the changed plan does not fit
    assert "after (ctx-per-agent=16384)" in longer.stdout
    assert "KV cache (GPU)            6,144.00" in longer.stdout and "+6,144.00" in longer.stdout
    assert "before: fits" in longer.stdout and "after: does not fit: KV cache" in longer.stdout
    smaller = vramcap(*base, "--compare", "kv-cache=q8_0", "--compare", "model=qwen2.5-7b:Q4_K_M", "--json")
    assert smaller.returncode == 0, smaller.stderr
    data = json.loads(smaller.stdout)
    assert data["changes"] == {"kv-cache": "q8_0", "model": "qwen2.5-7b:Q4_K_M"}
    assert data["before"]["config"]["kv_cache"] == "f16" and data["after"]["config"]["kv_cache"] == "q8_0"
    assert data["delta"]["KV cache (GPU)"] < 0 and data["fits"] == {"before": True, "after": True}


def test_compare_two_runs(tmp_path: Path) -> None:
    from pytest_vramcap.report.files import write_baseline, write_report
    from pytest_vramcap.report.snapshot import snapshot_of
    from tests.report.test_compare import BASE, report

    baseline = write_baseline(snapshot_of(report(BASE), name="main"), tmp_path / "main.json")
    same = write_report(report(BASE), tmp_path / "reports")
    slower = write_report(report([(2.2, 2.0)] * 3), tmp_path / "reports")
    ok = vramcap("compare", str(baseline), str(same))
    assert ok.returncode == 0 and "vramcap gate: no regression" in ok.stdout
    bad = vramcap("compare", str(baseline), str(slower), "--all")
    assert bad.returncode == 1 and "REGRESSED" in bad.stdout and "seq_wall" in bad.stdout  # --all: every metric
    loose = vramcap("compare", str(baseline), str(slower), "--fail", "speedup:50%", "--json")
    assert loose.returncode == 0 and json.loads(loose.stdout)["regressed"] is False
    for args, message in ((["compare", str(baseline), str(tmp_path / "none.json")], "cannot read"),
                          (["compare", str(baseline), str(same), "--fail", "fast:5%"], "use METRIC:PERCENT%")):
        result = vramcap(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
