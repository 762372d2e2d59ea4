"""Synthetic GGUFs: the planner's bytes, and loadable by a real llama-server."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from pytest_vramcap.engines import EngineOptions, LlamaServer, find_llama_server
from pytest_vramcap.errors import ConfigError, EngineNotFoundError
from pytest_vramcap.load.measure.client import ChatClient, ChatRequest
from pytest_vramcap.model import spec_from_gguf, spec_from_shape
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig

try:
    find_llama_server()
    HAVE_ENGINE = True
except EngineNotFoundError:  # pragma: no cover - CI installs the engine
    HAVE_ENGINE = False
needs_engine = pytest.mark.skipif(not HAVE_ENGINE, reason="needs llama-server (the engine extra)")


@pytest.mark.parametrize("weights", ["random", "zeros", "sparse"])
def test_file_holds_exactly_the_planned_tensor_bytes(tmp_path: Path, weights: str) -> None:
    path = write_gguf("tiny", "Q4_K_M", tmp_path / "t.gguf", weights=weights)
    spec, planned = spec_from_gguf(path), spec_from_shape("tiny", "Q4_K_M")
    assert spec.tensors == planned.tensors
    data = sum(math.ceil(t.nbytes / 32) * 32 for t in spec.tensors)
    assert path.stat().st_size - data < 1_000_000  # the rest is the header (metadata + vocabulary)


def test_random_blocks_carry_finite_scales(tmp_path: Path) -> None:
    import gguf

    path = write_gguf("tiny", "Q4_K_M", tmp_path / "t.gguf", layers=1)
    reader = gguf.GGUFReader(path)
    checked = set()
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind in ("Q4_K", "Q6_K") and kind not in checked and tensor.name.startswith("blk."):
            checked.add(kind)
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            # |w| <= d x |int8 sub-scale| x |6-bit quant| = 2^-10 x 128 x 32 for Q6_K (less for Q4_K)
            assert np.isfinite(values).all() and np.abs(values).max() <= 2.0 ** -10 * 128 * 32
    assert checked == {"Q4_K", "Q6_K"}


def test_layers_shrink_depth_and_bad_arguments(tmp_path: Path) -> None:
    assert spec_from_gguf(write_gguf("qwen2.5-14b", "Q4_K_M", tmp_path / "q.gguf", layers=2,
                                     weights="sparse")).n_layer == 2
    with pytest.raises(ConfigError, match="--weights"):
        write_gguf("tiny", "Q8_0", tmp_path / "x.gguf", weights="noise")
    with pytest.raises(ConfigError, match="--layers"):
        write_gguf("tiny", "Q8_0", tmp_path / "x.gguf", layers=0)


@needs_engine
@pytest.mark.parametrize("shape, mix, layers", [
    ("tiny", "Q4_K_M", None), ("tiny", "Q5_K_M", None), ("tiny", "Q6_K", None), ("tiny", "F16", None),
    ("qwen2.5-0.5b", "Q4_K_M", 2),  # qwen2: biases, tied embeddings, Q5_0/Q8_0 fallbacks
    ("qwen3-0.6b", "Q8_0", 2),      # qwen3: q/k norms
])
def test_llama_server_loads_and_generates(tmp_path: Path, shape: str, mix: str, layers: int | None) -> None:
    model = write_gguf(shape, mix, tmp_path / "m.gguf", layers=layers)
    with LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256), model,
                     EngineOptions(log_dir=tmp_path, startup_timeout_s=120)) as server:
        async def ask():  # type: ignore[no-untyped-def]
            async with ChatClient(server.url) as client:
                return await client.chat(ChatRequest([{"role": "user", "content": "hi"}], 8))

        record = asyncio.run(ask())
    assert record.n_out == 8 and not server.log.load_failed
