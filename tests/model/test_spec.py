from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest

from pytest_vramcap.errors import BadInputError, ModelSourceError
from pytest_vramcap.model import load_model, spec_from_gguf, spec_from_ollama_show, spec_from_shape
from pytest_vramcap.model.synth import write_sparse_gguf
from pytest_vramcap.planner.memory import ServerConfig, estimate_memory
from pytest_vramcap.planner.profiles import resolve_profile


@pytest.fixture(scope="module")
def q14_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sparse_gguf("qwen2.5-14b", "Q4_K_M", tmp_path_factory.mktemp("gguf") / "q14.gguf")


def test_gguf_header_gives_the_same_spec_as_the_shape(q14_gguf: Path) -> None:
    from_file, from_shape = spec_from_gguf(q14_gguf), spec_from_shape("qwen2.5-14b", "Q4_K_M")
    assert from_file.tensors == from_shape.tensors
    assert from_file.layers == from_shape.layers
    assert (from_file.n_vocab, from_file.n_ctx_train, from_file.file_type) == (152064, 32768, "Q4_K_M")
    assert from_file.file_size == q14_gguf.stat().st_size
    assert q14_gguf.stat().st_size > 8.9e9  # the real model's size: a 9 GB file


def test_planning_a_9gb_gguf_reads_only_the_header(q14_gguf: Path) -> None:
    """Touching the 8.4 GiB data region would fault in ~2 million pages; the header is a few MB."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    spec = spec_from_gguf(q14_gguf)
    estimate_memory(spec, ServerConfig(parallel=4, ctx_per_agent=8192), resolve_profile("16gb", {}))
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults = (after.ru_minflt - before.ru_minflt) + (after.ru_majflt - before.ru_majflt)
    assert faults < 20_000


def test_per_layer_kv_heads_and_sliding_window_come_from_the_file(tmp_path: Path) -> None:
    path = write_sparse_gguf("gemma3-4b", "Q4_K_M", tmp_path / "g3.gguf")
    spec = spec_from_gguf(path)
    assert spec.n_swa == 1024
    assert [layer.swa for layer in spec.layers[:6]] == [True] * 5 + [False]
    assert spec.tied_embeddings


def test_shrunk_depth(tmp_path: Path) -> None:
    spec = spec_from_gguf(write_sparse_gguf("qwen2.5-0.5b", "Q8_0", tmp_path / "tiny.gguf", layers=2))
    assert spec.n_layer == 2 and len(spec.layers) == 2


def _ollama_show(spec_name: str) -> dict:
    """An /api/show verbose body as Ollama documents it: GGUF keys in model_info, tensor infos in tensors."""
    from pytest_vramcap.model.from_shape import shape_metadata

    kv, tensors = shape_metadata(spec_name, "Q4_K_M")
    return {
        "details": {"format": "gguf", "quantization_level": "Q4_K_M"},
        "model_info": kv,
        "tensors": [{"name": t.name, "type": t.ggml_type.name, "shape": list(t.dims)} for t in tensors],
    }


def test_ollama_show_json(tmp_path: Path) -> None:
    spec = spec_from_ollama_show(_ollama_show("qwen2.5-7b"), "qwen2.5:7b")
    assert spec.weights_bytes == spec_from_shape("qwen2.5-7b").weights_bytes
    assert spec.model_ref == "qwen2.5:7b"
    path = tmp_path / "show.json"
    import json

    path.write_text(json.dumps(_ollama_show("qwen2.5-7b")))
    assert load_model(str(path)).layers == spec.layers


def test_ollama_show_without_verbose_is_refused() -> None:
    with pytest.raises(ModelSourceError, match="verbose"):
        spec_from_ollama_show({"model_info": {"general.architecture": "llama"}}, "x")


def test_ollama_gptoss_arch_name_is_understood() -> None:
    body = _ollama_show("gpt-oss-20b")
    body["model_info"] = {k.replace("gpt-oss", "gptoss"): v for k, v in body["model_info"].items()}
    body["model_info"]["general.architecture"] = "gptoss"  # Ollama's own spelling
    spec = spec_from_ollama_show(body, "gpt-oss:20b")
    assert spec.arch == "gpt-oss" and spec.n_swa == 128


def _write_gguf(path: Path, arch: str) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.gguf", "does not exist"),
    (lambda p: (p / "notes.gguf").write_text("hello, not a model") and p / "notes.gguf", "not a GGUF file"),
    (lambda p: _write_gguf(p / "foo.gguf", "foo"), "unknown architecture 'foo'"),
])
def test_bad_model_files(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelSourceError, match=message):
        spec_from_gguf(make(tmp_path))


def test_truncated_header(tmp_path: Path) -> None:
    path = write_sparse_gguf("qwen2.5-0.5b", "Q8_0", tmp_path / "cut.gguf", layers=2)
    data = path.read_bytes()[:200_000]  # inside the tokenizer arrays
    path.write_bytes(data)
    with pytest.raises(ModelSourceError, match="truncated or corrupt"):
        spec_from_gguf(path)


@pytest.mark.parametrize("source, message", [
    ("", "empty --model"),
    ("qwen9-14b", "unknown model shape"),
    ("qwen2.5-14b:Q3_XYZ", "unknown quantization"),
])
def test_bad_sources(source: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        load_model(source)
