"""--model as a typed source: four spellings, one parse, and the spec each one loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vramcap.errors import BadInputError
from pytest_vramcap.model import (
    GgufFile,
    OllamaModel,
    ShapeSource,
    ShowJsonFile,
    load_model,
    parse_model_source,
    shape_metadata,
    write_sparse_gguf,
)


@pytest.mark.parametrize("text, source, spelled, ref", [
    ("qwen2.5-14b", ShapeSource("qwen2.5-14b", "Q4_K_M"), "shape:qwen2.5-14b:Q4_K_M", "qwen2.5-14b-Q4_K_M.gguf"),
    ("Qwen-2.5-14B:q8_0", ShapeSource("qwen2.5-14b", "Q8_0"), "shape:qwen2.5-14b:Q8_0", "qwen2.5-14b-Q8_0.gguf"),
    ("llama3.3-70b", ShapeSource("llama3.1-70b", "Q4_K_M"), "shape:llama3.1-70b:Q4_K_M", "llama3.1-70b-Q4_K_M.gguf"),
    ("ollama:qwen2.5:14b", OllamaModel("qwen2.5:14b"), "ollama:qwen2.5:14b", "qwen2.5:14b"),
    ("models/missing.gguf", GgufFile(Path("models/missing.gguf")), "models/missing.gguf", "models/missing.gguf"),
])
def test_spellings(text: str, source: object, spelled: str, ref: str) -> None:
    parsed = parse_model_source(text)
    assert parsed == source and str(parsed) == spelled and parsed.ref == ref


def test_quant_and_ollama_url_join_the_source() -> None:
    assert parse_model_source("tiny", quant="F16") == ShapeSource("tiny", "F16")
    assert parse_model_source("ollama:x", ollama_url="http://h:1") == OllamaModel("x", "http://h:1")
    with pytest.raises(BadInputError, match="names Q8_0 but --quant says F16"):
        parse_model_source("tiny:Q8_0", quant="F16")


@pytest.mark.parametrize("text, message", [
    ("", "empty --model"), ("ollama:", "needs a model name"), ("qwen9-14b", "unknown model shape"),
    ("tiny:Q3_XYZ", "unknown quantization")])
def test_bad_sources(text: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_model_source(text)


def test_every_file_source_loads_the_same_spec(tmp_path: Path) -> None:
    from_shape = load_model("qwen2.5-0.5b:Q8_0")
    gguf = write_sparse_gguf("qwen2.5-0.5b", "Q8_0", tmp_path / "q.gguf")
    kv, tensors = shape_metadata("qwen2.5-0.5b", "Q8_0")
    show = tmp_path / "qwen2.5-0.5b.json"
    show.write_text(json.dumps({"model_info": kv, "tensors": [
        {"name": t.name, "type": t.ggml_type.name, "shape": list(t.dims)} for t in tensors]}))
    for source in (str(gguf), str(show)):
        spec = load_model(source)
        assert (spec.tensors, spec.layers) == (from_shape.tensors, from_shape.layers)
    assert load_model(str(gguf)).source == GgufFile(gguf)
    assert load_model(str(show)).source == ShowJsonFile(show) and load_model(str(show)).model_ref == "qwen2.5-0.5b"


def test_a_show_file_that_is_not_an_object(tmp_path: Path) -> None:
    show = tmp_path / "list.json"
    show.write_text("[1, 2]")
    with pytest.raises(BadInputError, match="an /api/show answer is a JSON object, not list"):
        load_model(str(show))
