"""Ollama's local model store: a pulled model is planned from its GGUF when no Ollama answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vramcap.cli import main
from pytest_vramcap.engines import free_port
from pytest_vramcap.model.ollama_store import local_model_blob, manifest_path
from pytest_vramcap.model.synth import write_gguf
from tests.ollama_double import pull

ROOT = Path("/store")


@pytest.mark.parametrize(("name", "where"), [
    ("qwen2.5:14b", "registry.ollama.ai/library/qwen2.5/14b"),
    ("qwen2.5", "registry.ollama.ai/library/qwen2.5/latest"),
    ("someone/model:q4", "registry.ollama.ai/someone/model/q4"),
    ("hf.co/org/model:Q4_K_M", "hf.co/org/model/Q4_K_M"),
    ("localhost:5000/ns/m", "localhost:5000/ns/m/latest"),  # a ":" before the last "/" is a port, not a tag
])
def test_names_map_to_ollamas_manifest_paths(name: str, where: str) -> None:
    """types/model/name.go: ParseName's defaults, then Filepath = host/namespace/model/tag."""
    assert manifest_path(name, ROOT) == ROOT / "manifests" / where


@pytest.mark.parametrize("name", ["a/b/c/d", "model:", "../x", "a//b", ""])
def test_names_ollama_refuses_have_no_path(name: str) -> None:
    assert manifest_path(name, ROOT) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf("tiny", "Q8_0", tmp_path_factory.mktemp("gguf") / "tiny.gguf", weights="sparse")


def test_the_model_layer_is_the_blob(tiny: Path, tmp_path: Path) -> None:
    blob = pull(tmp_path, "tiny:q8", tiny)
    assert local_model_blob("tiny:q8", tmp_path) == blob
    assert local_model_blob("tiny", tmp_path) is None  # another tag
    manifest = manifest_path("tiny:q8", tmp_path)
    assert manifest is not None
    manifest.write_text("{not json")
    assert local_model_blob("tiny:q8", tmp_path) is None


def test_a_manifest_without_its_blob_is_not_a_model(tiny: Path, tmp_path: Path) -> None:
    pull(tmp_path, "tiny", tiny).unlink()
    assert local_model_blob("tiny", tmp_path) is None
    manifest = manifest_path("tiny", tmp_path)
    assert manifest is not None and json.loads(manifest.read_text())["layers"]


def test_plan_falls_back_to_the_store_when_no_ollama_answers(tiny: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pull(tmp_path, "tiny", tiny)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["plan", "--model", "ollama:tiny", "--ollama-url", dead, "--agents", "2", "--ctx", "1024",
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["model"]["name"] == "tiny" and plan["ollama"]["model"] == "tiny-vramcap"
    assert plan["memory"]["gpu"]["model_mib"] > 0

    assert main(["plan", "--model", "ollama:absent", "--ollama-url", dead]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach Ollama" in err[0] and f"local store {tmp_path}" in err[0]
