"""The Ollama engine end to end: ``ollama serve`` started from the plan, the model created from our GGUF,
preloaded, and read back from /api/ps.

Ollama itself cannot be installed here, so these run against the double in tests/ollama_double (which
starts the REAL llama-server the way Ollama >= 0.30 does); the same tests run against a real ``ollama``
when one is on PATH.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import gguf
import httpx
import pytest

from pytest_vramcap.engines.ollama import OllamaServer, find_ollama, parse_version
from pytest_vramcap.errors import EngineNotFoundError, EngineStartError, VramcapWarning
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.planner.plan import PlanRequest
from pytest_vramcap.planner.profiles import resolve_profile
from pytest_vramcap.planner.solver import make_plan
from pytest_vramcap.report.verdicts import Verdict, served_verdict
from tests.helpers import needs_llama_server, processes_with
from tests.ollama_double import launcher

pytestmark = needs_llama_server

CONFIG = ServerConfig(parallel=2, ctx_per_agent=1024, n_ubatch=256)


@pytest.fixture(params=["double", "real"])
def ollama(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "real":
        real = shutil.which("ollama")
        if real is None:
            pytest.skip("no ollama on PATH: the real-Ollama run of this test needs one")
        return Path(real)
    return launcher(tmp_path)


def engine(binary: Path, model: Path | str, tmp_path: Path, config: ServerConfig = CONFIG,
           **env: str) -> OllamaServer:
    # LLAMA_ARG_REPACK=0: llama-server inherits it from `ollama serve` (CPU builds crash repacking on AMX CPUs).
    return OllamaServer(config, model, "tiny-vramcap", fit_margin_mib=1024, binary=binary, log_dir=tmp_path / "logs",
                        startup_timeout_s=120,
                        env={"OLLAMA_MODELS": str(tmp_path / "store"), "LLAMA_ARG_REPACK": "0", **env})


@pytest.fixture
def started(ollama: Path, tiny_model: Path, tmp_path: Path) -> Iterator[OllamaServer]:
    server = engine(ollama, tiny_model, tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_plan_is_served_as_planned_and_nothing_survives(started: OllamaServer, tmp_path: Path) -> None:
    served = started.loaded
    assert served is not None and served.context_length == CONFIG.ctx_per_agent and served.size_mib > 0
    evidence = started.evidence()
    assert evidence.log is not None and evidence.log.recognised > 0  # llama-server's log, through Ollama's
    assert served_verdict_for(started).outcome == "pass"
    text = started.log_path.read_text() if started.log_path else ""
    # Ollama >= 0.30 starts llama-server with -c num_ctx*np -np np -b N -ub N (llm/llama_server.go).
    assert "-c 2048 -np 2" in text and "-b 256 -ub 256" in text
    started.stop()
    assert processes_with(str(tmp_path)) == []


def served_verdict_for(server: OllamaServer) -> Verdict:
    plan = make_plan(spec_from_shape("tiny", "Q8_0"), resolve_profile("16gb", {}),
                     PlanRequest(agents=CONFIG.parallel, ctx_per_agent=CONFIG.ctx_per_agent, ubatch=CONFIG.n_ubatch))
    return served_verdict(plan, server.evidence())


def test_a_request_with_another_num_ctx_reloads_and_the_verdict_says_so(started: OllamaServer) -> None:
    """server/sched.go needsReload: an explicit num_ctx that differs from the loaded one reloads the model."""
    body = {"model": "tiny-vramcap", "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_ctx": 512, "num_predict": 2}}
    assert httpx.post(f"{started.url}/api/chat", json=body, timeout=120).status_code == 200
    verdict = served_verdict_for(started)
    assert verdict.outcome == "fail"
    assert any("context_length 512, planned 1024" in line for line in verdict.evidence)
    assert any("reloaded" in line for line in verdict.evidence)


def test_a_model_that_cannot_load_is_ollamas_500_with_its_message(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown-arch.gguf"  # a valid GGUF that llama.cpp has no loader for
    writer = gguf.GGUFWriter(str(unknown), "nosucharch")
    writer.add_context_length(2048)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    server = engine(launcher(tmp_path), unknown, tmp_path)
    with pytest.raises(EngineStartError, match="HTTP 500: llama-server process has terminated"):
        server.start()
    server.stop()
    assert processes_with(str(tmp_path)) == []


def test_a_full_load_queue_is_503_server_busy(tiny_model: Path, tmp_path: Path) -> None:
    """server/sched.go: OLLAMA_MAX_QUEUE pending loads, then 503 "server busy" (two spaces)."""
    server = engine(launcher(tmp_path), tiny_model, tmp_path, OLLAMA_MAX_QUEUE="0")
    with pytest.raises(EngineStartError, match=re.escape("HTTP 503: server busy, please try again.  maximum pending")):
        server.start()
    server.stop()


def test_an_ollama_older_than_0_30_is_warned_about(tiny_model: Path, tmp_path: Path) -> None:
    server = engine(launcher(tmp_path), tiny_model, tmp_path, VRAMCAP_OLLAMA_DOUBLE_VERSION="0.12.10")
    try:
        with pytest.warns(VramcapWarning, match="0.12.10 is older than 0.30"):
            server.start()
    finally:
        server.stop()


def test_attached_ollama_is_used_and_left_running(tiny_model: Path, tmp_path: Path) -> None:
    owner = engine(launcher(tmp_path), tiny_model, tmp_path)
    owner.start()
    try:
        # Another model file: Ollama keys its runners by file, so one of the same file would share the owner's.
        other = write_gguf("tiny", "Q8_0", tmp_path / "tiny-2-layers.gguf", layers=2)
        attached = OllamaServer(CONFIG, other, "tiny-attached", fit_margin_mib=1024, url=owner.url)
        attached.start()
        assert attached.pid is None and attached.loaded is not None
        attached.stop()
        assert httpx.get(f"{owner.url}/api/version", timeout=10).status_code == 200
    finally:
        owner.stop()


def test_vramcap_ollama_must_name_an_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRAMCAP_OLLAMA", str(tmp_path / "missing"))
    with pytest.raises(EngineNotFoundError, match="is not an executable file"):
        find_ollama()
    monkeypatch.setenv("VRAMCAP_OLLAMA", str(launcher(tmp_path)))
    assert find_ollama() == tmp_path / "ollama"


@pytest.mark.parametrize("text, parsed", [("0.33.0-rc2", (0, 33)), ("v0.30.1", (0, 30)), ("0.6.8", (0, 6)),
                                          ("", None), ("dev", None)])
def test_versions(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_version(text) == parsed


def test_stopping_the_engine_stops_ollama_and_its_runner(tiny_model: Path, tmp_path: Path) -> None:
    server = engine(launcher(tmp_path), tiny_model, tmp_path)
    server.start()
    assert len(processes_with(str(tmp_path))) >= 2  # `ollama serve` (the double) and its llama-server
    server.stop()
    assert processes_with(str(tmp_path)) == []
