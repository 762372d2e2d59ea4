"""llama-server's settings from its command line and its ``LLAMA_ARG_*`` environment, as common/arg.cpp reads them
(a flag wins over the variable). Only what a plan decides is read; anything else is left alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["RunnerFlags", "read_flags"]

# name in RunnerFlags -> (the flags common/arg.cpp accepts, its environment variable)
_FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "model": (("-m", "--model"), "LLAMA_ARG_MODEL"),
    "parallel": (("-np", "--parallel"), "LLAMA_ARG_N_PARALLEL"),
    "ctx_size": (("-c", "--ctx-size"), "LLAMA_ARG_CTX_SIZE"),
    "cache_type_k": (("-ctk", "--cache-type-k"), "LLAMA_ARG_CACHE_TYPE_K"),
    "cache_type_v": (("-ctv", "--cache-type-v"), "LLAMA_ARG_CACHE_TYPE_V"),
    "flash_attn": (("-fa", "--flash-attn"), "LLAMA_ARG_FLASH_ATTN"),
    "batch": (("-b", "--batch-size"), "LLAMA_ARG_BATCH"),
    "ubatch": (("-ub", "--ubatch-size"), "LLAMA_ARG_UBATCH"),
    "gpu_layers": (("-ngl", "--gpu-layers", "--n-gpu-layers"), "LLAMA_ARG_N_GPU_LAYERS"),
    "fit": (("-fit", "--fit"), "LLAMA_ARG_FIT"),
}
_SWITCHES: dict[str, tuple[tuple[str, ...], str]] = {
    "kv_unified": (("-kvu", "--kv-unified"), "LLAMA_ARG_KV_UNIFIED"),
    "embeddings": (("--embedding", "--embeddings"), "LLAMA_ARG_EMBEDDINGS"),
}


@dataclass(frozen=True)
class RunnerFlags:
    """What a llama-server was told; None where it was not told (it then runs llama.cpp's default)."""

    model: str | None = None
    parallel: str | None = None
    ctx_size: str | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    flash_attn: str | None = None
    batch: str | None = None
    ubatch: str | None = None
    gpu_layers: str | None = None
    fit: str | None = None
    kv_unified: bool = False
    embeddings: bool = False

    def shown(self) -> str:
        """The flags that were given, as one line of evidence."""
        given = [f"{name}={value}" for name, value in vars(self).items() if value not in (None, False)]
        return ", ".join(given) or "no flags a plan sets"


def read_flags(argv: Sequence[str], env: Mapping[str, str] | None = None) -> RunnerFlags:
    """The settings in ``argv`` (``-c 8192`` and ``--ctx-size=8192`` alike), then in ``env``."""
    env = env or {}
    values: dict[str, str | bool] = {}
    for name, (names, variable) in _FLAGS.items():
        found = _value(argv, names)
        if found is None and variable in env:
            found = env[variable]
        if found is not None:
            values[name] = found
    for name, (names, variable) in _SWITCHES.items():
        values[name] = any(arg in names for arg in argv) or env.get(variable, "").lower() in ("1", "true", "on")
    return RunnerFlags(**values)  # type: ignore[arg-type]


def _value(argv: Sequence[str], names: tuple[str, ...]) -> str | None:
    found = None
    for index, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if name in names:
            if equals:
                found = value
            elif index + 1 < len(argv):
                found = argv[index + 1]
    return found  # the last one given wins, as argparse-style parsers take it
