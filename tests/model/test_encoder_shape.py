"""A BERT-style embedding model (nomic-embed-text, llama.cpp's nomic-bert): planned without a KV cache, with a
micro-batch as long as its context, and served that way by a real llama-server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig
from pytest_vramcap.planner.plan import PlanRequest
from pytest_vramcap.planner.profiles import resolve_profile
from pytest_vramcap.planner.render import llama_server_args
from pytest_vramcap.planner.solver import make_plan
from tests.helpers import needs_llama_server

MIB = 1024 * 1024


def test_nomic_embed_text_is_an_encoder_planned_without_a_kv_cache() -> None:
    spec = spec_from_shape("nomic-embed-text", "F16")
    assert spec.encoder_only and spec.embedding and not spec.tied_embeddings
    plan = make_plan(spec, resolve_profile("16gb"), PlanRequest(agents=1))
    # Ollama's nomic-embed-text (F16) is 274,290,656 bytes with its header and vocabulary; the tensors alone:
    assert spec.weights_bytes / MIB == pytest.approx(260.86, abs=0.01)
    assert plan.memory.gpu.context == 0 and plan.memory.cpu.context == 0
    assert plan.config.ctx_per_agent == 2048  # solved: nothing grows with context but the compute buffer
    assert plan.config.n_ubatch == plan.config.n_batch == 2048 and plan.config.embedding
    args = llama_server_args(plan.config, "nomic.gguf", fit_margin_mib=1024)
    assert "--embeddings" in args and args[args.index("-ub") + 1] == "2048"


@needs_llama_server
def test_the_plans_micro_batch_takes_an_input_as_long_as_the_context(tmp_path: Path) -> None:
    """llama-server embeds an input in one micro-batch: with the default -ub 512 a 1,000-token input is refused;
    the plan's -ub (the context) takes it. The weights llama.cpp loads are the plan's to the byte."""
    path = write_gguf("nomic-embed-text", "F16", tmp_path / "nomic.gguf", layers=2)
    spec = spec_from_shape("nomic-embed-text", "F16")
    planned = make_plan(spec, resolve_profile("16gb"), PlanRequest(agents=1, ctx_per_agent=1024)).config
    text = "word " * 1000  # 1,000 WordPiece tokens, plus [CLS] and [SEP]
    for config, status in ((ServerConfig(parallel=1, ctx_per_agent=1024, embedding=True), 500), (planned, 200)):
        with LlamaServer(config, path, EngineOptions(log_dir=tmp_path, startup_timeout_s=120)) as server:
            answer = httpx.post(f"{server.url}/v1/embeddings", json={"input": text}, timeout=120)
            assert answer.status_code == status, answer.text[:300]
            log = server.evidence().log
    assert answer.json()["usage"]["prompt_tokens"] == 1002
    assert log is not None and log.model.host() == pytest.approx(
        sum(t.nbytes for t in spec.tensors if t.layer is None or t.layer < 2) / MIB, abs=0.01)
