"""pytest options and ini keys, and the frozen settings they resolve to.

Every option ``--vramcap-NAME`` has an ini key ``vramcap_NAME``; the command
line wins over the ini file, which wins over the defaults. Defaults make the
bare ``pytest --vram-profile=16gb`` work on a fresh machine: the embedded
llama-server with a synthesized ~110 MB model. Values are checked when pytest
parses its options, so a bad one is a usage error before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from .kvtypes import KV_CACHE_TYPES, UNQUANTIZED_KV_TYPES
from .parsers import argparse_type, choice, http_url, positive_float, positive_int

__all__ = ["Settings", "add_options", "ENGINES", "DEFAULT_MODEL"]

ENGINES = ("auto", "llamacpp", "ollama", "url")
# 254 MB of F16 weights whose CPU decode batches well (see shapes.py, docs/benchmarks.md).
DEFAULT_MODEL = "small:F16"


# name: (parser, default, help)
_OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "engine": (choice(ENGINES), "auto", "auto (a URL if given, else the embedded llama-server), llamacpp, "
                                         "ollama (attach to Ollama's OpenAI API), or url"),
    "model": (str, DEFAULT_MODEL, "a .gguf path, a shape like qwen2.5-14b:Q4_K_M (synthesized), or an Ollama "
                                  "model name with --vramcap-engine=ollama"),
    "agents": (positive_int, None, "server slots (default: the widest step of the collected scenarios)"),
    "ctx": (positive_int, 8192, "context per agent (Ollama num_ctx)"),
    "kv-cache": (choice(KV_CACHE_TYPES), "f16", "KV cache type: f16, q8_0, q4_0"),
    "flash-attn": (choice(("on", "off")), "on", "flash attention"),
    "server-url": (http_url, None, "attach to this server instead of starting one"),
    "report-dir": (Path, Path("reports"), "where the JSON run report goes"),
    "min-speedup": (positive_float, None, "override every scenario's minimum parallel speedup"),
    "startup-timeout": (positive_float, 300.0, "seconds to wait for the server to become healthy"),
    "models-dir": (Path, None, "where shapes are synthesized (default ~/.cache/pytest-vramcap/models)"),
    "fit": (choice(("on", "off")), "off", "off: pin the plan's layers (-ngl, --fit off), an overflow is an OOM; "
                                          "on: llama.cpp --fit as under Ollama, an overflow spills to the CPU"),
    "emulate": (choice(("auto", "on", "off")), "auto", "hold a VRAM ballast so a bigger GPU offers only the "
                                                        "profile's memory (auto: when the GPU is bigger)"),
}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vramcap", "VRAM capacity tests (pytest-vramcap)")
    group.addoption("--vram-profile", dest="vram_profile", default=None, type=argparse_type(_profile_or_error),
                    metavar="PROFILE", help="VRAM budget to plan and test against: 16gb, 24GiB, rtx4080, h100-80gb... "
                                            "(enables the plugin)")
    parser.addini("vramcap_vram_profile", "default for --vram-profile", default=None)
    for name, (parse, _default, help_text) in _OPTIONS.items():
        dest = "vramcap_" + name.replace("-", "_")
        group.addoption(f"--vramcap-{name}", dest=dest, default=None, type=argparse_type(parse), help=help_text)
        parser.addini(dest, f"default for --vramcap-{name}", default=None)


def _profile_or_error(text: str) -> str:
    from .errors import ProfileError
    from .profiles import resolve_profile

    try:
        resolve_profile(text)
    except ProfileError as exc:
        raise ValueError(str(exc)) from None
    return text


@dataclass(frozen=True)
class Settings:
    profile: str
    engine: str
    model: str
    agents: int | None
    ctx: int
    kv_cache: str
    flash_attn: bool
    server_url: str | None
    report_dir: Path
    min_speedup: float | None
    startup_timeout: float
    models_dir: Path | None
    fit: bool = False
    emulate: str = "auto"

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings | None":
        """None when the plugin is not enabled (no --vram-profile and no ini default)."""
        profile = config.getoption("vram_profile") or config.getini("vramcap_vram_profile")
        if not profile:
            return None
        values: dict[str, Any] = {}
        for name, (parse, default, _help) in _OPTIONS.items():
            dest = "vramcap_" + name.replace("-", "_")
            value = config.getoption(dest)
            if value is None:
                raw = config.getini(dest)
                try:
                    value = parse(raw) if raw not in (None, "") else default
                except (ValueError, TypeError) as exc:
                    raise pytest.UsageError(f"ini key {dest}: {exc}") from None
            values[name.replace("-", "_")] = value
        try:
            _profile_or_error(profile)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        engine = values["engine"]
        if engine == "auto":
            engine = "url" if values["server_url"] else "llamacpp"
        if engine == "url" and not values["server_url"]:
            raise pytest.UsageError("--vramcap-engine=url needs --vramcap-server-url")
        if engine == "ollama" and not values["server_url"]:
            values["server_url"] = "http://127.0.0.1:11434"
        if values["kv_cache"] not in UNQUANTIZED_KV_TYPES and values["flash_attn"] == "off":
            raise pytest.UsageError(f"--vramcap-kv-cache {values['kv_cache']} needs --vramcap-flash-attn on")
        return cls(profile=profile, engine=engine, model=values["model"], agents=values["agents"],
                   ctx=values["ctx"], kv_cache=values["kv_cache"], flash_attn=values["flash_attn"] == "on",
                   server_url=values["server_url"], report_dir=values["report_dir"],
                   min_speedup=values["min_speedup"], startup_timeout=values["startup_timeout"],
                   models_dir=values["models_dir"], fit=values["fit"] == "on", emulate=values["emulate"])
