"""``vramcap doctor`` against what really runs: the embedded llama-server started with a config other than the
plan's, and the Ollama double (which starts the real llama-server with Ollama's flags; no Ollama binary can be
installed here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vramcap.engines import free_port
from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.engines.ollama import OllamaServer
from pytest_vramcap.gpu.nvml import detect_gpus
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import needs_llama_server, processes_with
from tests.ollama_double import launcher

PLAN = ["--model", "tiny:Q8_0", "--agents", "4", "--ctx-per-agent", "1024"]


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_vramcap.cli", "doctor", *args], capture_output=True,
                          text=True, timeout=120)


@needs_llama_server
@pytest.mark.parametrize(("slots", "code"), [(2, 1), (4, 0)])
def test_a_llama_server_with_fewer_slots_than_the_plan_is_a_finding(tiny_model: Path, tmp_path: Path, slots: int,
                                                                     code: int) -> None:
    config = ServerConfig(parallel=slots, ctx_per_agent=1024)
    with LlamaServer(config, tiny_model, EngineOptions(log_dir=tmp_path, startup_timeout_s=120)) as server:
        result = doctor("--server-url", server.url, *PLAN)
        as_json = doctor("--server-url", server.url, *PLAN, "--json")
    assert result.returncode == code, result.stdout + result.stderr
    data = json.loads(as_json.stdout)
    assert data["server"]["slots"] == slots and data["server"]["ctx_per_slot"] == 1024
    assert data["server"]["flags"]["parallel"] == str(slots)  # read from its command line in /proc
    assert data["gpu"]["device"] is None and result.stdout.count("\ngpu: none (") == 1  # no GPU on this machine
    if code:
        assert [finding["name"] for finding in data["findings"]] == ["slots"]
        assert "[FINDING] slots: 2 slot(s) for the plan's 4 agents: 2 of them wait for a slot" in result.stdout
        assert "fix: start llama-server with -np 4 -c 4096" in result.stdout
    else:
        assert data["as_planned"] and "runs as planned" in result.stdout


@needs_llama_server
def test_a_llama_server_with_another_kv_cache_and_micro_batch_is_named_from_its_command_line(
        tiny_model: Path, tmp_path: Path) -> None:
    config = ServerConfig(parallel=4, ctx_per_agent=512, cache_type_k="q8_0", cache_type_v="q8_0", n_ubatch=256)
    with LlamaServer(config, tiny_model, EngineOptions(log_dir=tmp_path, startup_timeout_s=120)) as server:
        data = json.loads(doctor("--server-url", server.url, *PLAN, "--json").stdout)
    found = {finding["name"]: finding for finding in data["findings"]}
    assert set(found) == {"context", "kv_cache", "batch"}
    assert found["context"]["summary"].startswith("each slot holds 512 tokens, the plan 1,024")
    assert found["kv_cache"]["fix"] == "--cache-type-k f16 --cache-type-v f16"
    assert "(the command line of pid " in found["kv_cache"]["evidence"][0]


@pytest.fixture(params=["double", "real"])
def ollama(request: pytest.FixtureRequest, tiny_model: Path, tmp_path: Path) -> Iterator[OllamaServer]:
    """An Ollama running the tiny model with 2 slots of 512: the double (a test double of ollama serve, which
    starts the real llama-server), and a real `ollama` when one is on PATH."""
    if request.param == "real":
        real = shutil.which("ollama")
        if real is None:
            pytest.skip("no ollama on PATH: the real-Ollama run of this test needs one")
        binary = Path(real)
    else:
        binary = launcher(tmp_path)
    server = OllamaServer(ServerConfig(parallel=2, ctx_per_agent=512), tiny_model, "tiny-vramcap",
                          fit_margin_mib=1024, binary=binary, log_dir=tmp_path / "logs",
                          startup_timeout_s=120,
                          env={"OLLAMA_MODELS": str(tmp_path / "store"), "LLAMA_ARG_REPACK": "0"})
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert processes_with(str(tmp_path)) == []


@needs_llama_server
def test_an_ollama_runner_with_fewer_slots_and_less_context_than_the_plan(ollama: OllamaServer) -> None:
    result = doctor("--ollama-url", ollama.url, "--served-model", "tiny-vramcap", *PLAN, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    found = {finding["name"]: finding for finding in data["findings"]}
    assert {"slots", "context"} <= set(found) <= {"slots", "context", "cpu_offload"}
    if not detect_gpus()[0]:  # no GPU: the runner holds nothing in VRAM, which /api/ps shows and doctor names
        assert found["cpu_offload"]["summary"].startswith("100% of the model is on the CPU")
    assert found["slots"]["fix"].startswith("OLLAMA_NUM_PARALLEL=4 for `ollama serve`")
    assert found["context"]["evidence"][0] == "/api/ps context_length: 512; the plan: 1024 per agent"
    assert data["server"]["flags_source"].startswith("the command line of pid ")
    assert data["server"]["server_env"]["OLLAMA_NUM_PARALLEL"] == "2"


@needs_llama_server
def test_an_ollama_log_gives_the_runners_flags(ollama: OllamaServer, tmp_path: Path) -> None:
    """Where the runner runs elsewhere, its flags come from Ollama's log (here: the double's, as Ollama writes it)."""
    assert ollama.log_path is not None
    from pytest_vramcap.doctor.observe import _ollama_runner

    flags, source = _ollama_runner("http://ollama.example:11434", None, ollama.log_path)
    assert flags is not None and flags.parallel == "2" and flags.ctx_size == "1024"
    assert source == f"the log {ollama.log_path}"


@pytest.mark.parametrize("args, message", [
    (["--server-url", f"http://127.0.0.1:{free_port()}"], "vramcap: error: nothing answers at http://127.0.0.1:"),
    (["--ollama-url", f"http://127.0.0.1:{free_port()}"], "vramcap: error: nothing answers at http://127.0.0.1:"),
    (["--server-url", "http://127.0.0.1:1", "--log", "x.log"], "vramcap: error: --log is Ollama's server log"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = doctor(*args, *PLAN)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1, result.stderr


@needs_llama_server
def test_a_url_of_the_other_kind_and_a_model_not_loaded_are_one_line(ollama: OllamaServer, tmp_path: Path) -> None:
    wrong_kind = doctor("--server-url", ollama.url, *PLAN)
    assert wrong_kind.returncode == 2 and "is not a llama-server (GET /props has no total_slots)" in wrong_kind.stderr
    not_loaded = doctor("--ollama-url", ollama.url, "--served-model", "qwen3:8b", *PLAN)
    assert not_loaded.returncode == 2 and "has not loaded qwen3:8b (loaded: tiny-vramcap:latest)" in \
        not_loaded.stderr
    not_a_log = tmp_path / "not-ollama.log"
    not_a_log.write_text("hello\n")
    from pytest_vramcap.doctor.observe import _ollama_runner
    from pytest_vramcap.errors import BadInputError

    with pytest.raises(BadInputError, match="is not Ollama's server log"):
        _ollama_runner("http://ollama.example:11434", None, not_a_log)
