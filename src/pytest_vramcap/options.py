"""One option table for the ``vramcap`` command and the pytest plugin.

Each option is defined once: its name, parser, default and help. A surface
registers the groups it needs with :func:`add_options` (pytest-benchmark's
``add_*_options(addoption, prefix)`` pattern): the CLI without a prefix
(``--kv-cache``), the plugin with ``vramcap-`` (``--vramcap-kv-cache``, ini key
``vramcap_kv_cache``). Both parse with the same functions, so a value is
accepted or refused the same way everywhere, and both turn the parsed values
into a plan through one function (:func:`pytest_vramcap.planner.plan_from_options`).

Import-free beyond the standard library, so loading the plugin stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .defaults import (
    DEFAULT_AGENTS,
    DEFAULT_BASELINE_DIR,
    DEFAULT_BASELINE_RUNS,
    DEFAULT_COMPARE_FAIL,
    DEFAULT_CTX_PER_AGENT,
    DEFAULT_FIT_MARGIN_MIB,
    DEFAULT_MODEL,
    DEFAULT_OLLAMA_URL,
    DEFAULT_PROFILE,
    DEFAULT_REPORT_DIR,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_ROUNDS,
    DEFAULT_STARTUP_TIMEOUT_S,
    DEFAULT_UBATCH,
)
from .errors import ConfigError
from .net import http_url, ollama_url
from .parsers import (
    RoleValue,
    argparse_type,
    baseline_name,
    boolean,
    choice,
    compare_fail,
    gpu_layers,
    non_empty,
    non_negative_int,
    positive_float,
    positive_int,
    role_value,
)
from .types import EMULATE_MODES, ENGINE_CHOICES, KV_CACHE_TYPES, ON_OFF

__all__ = ["DEFAULT_ROLE", "EMULATE", "ENGINE_OPTIONS", "PLAN_OPTIONS", "REQUEST_TIMEOUT", "ROLE_OPTIONS",
           "RUN_OPTIONS", "Option", "add_options",
           "plan_change", "role_values", "single_model_values", "with_run_defaults"]

_SAME = object()


@dataclass(frozen=True)
class Option:
    """One option as both surfaces know it."""

    name: str
    """Long name without dashes or prefix: ``kv-cache``."""
    parse: Callable[[str], Any]
    default: Any
    """The CLI's default (None: left out)."""
    help: str
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    """Other accepted names (``ctx`` for ``ctx-per-agent``)."""
    flag: bool = False
    """Takes no value: present means True."""
    pytest_default: Any = _SAME
    """Where the plugin's default differs from the CLI's (a test run needs a concrete model and slots)."""
    per_role: bool = False
    """Repeatable, each value for one model role (``chat=SRC``) or, without a role, for every model: the
    parsed value is a list of :class:`~.parsers.RoleValue` (:func:`role_values` splits it by role)."""

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def flags(self, prefix: str = "") -> list[str]:
        return [f"--{prefix}{name}" for name in (self.name, *self.aliases)]

    def default_for_pytest(self) -> Any:
        return self.default if self.pytest_default is _SAME else self.pytest_default

    def parse_value(self, text: str) -> Any:
        """One value as given on a command line (``chat=4`` for an option per role)."""
        return role_value(self.parse)(text) if self.per_role else self.parse(text)


PLAN_OPTIONS: tuple[Option, ...] = (
    Option("model", non_empty, None, "a .gguf path, a known shape (qwen2.5-14b or qwen2.5-14b:Q4_K_M), ollama:NAME, "
           "or an /api/show JSON file (pytest: a shape is synthesized; default small:F16); ROLE=SRC, repeated, "
           "plans several models on one card, each its own server", "SRC",
           pytest_default=DEFAULT_MODEL, per_role=True),
    Option("quant", non_empty, None, "quantization mix for a shape named without one (default Q4_K_M)", "MIX"),
    Option("profile", non_empty, DEFAULT_PROFILE, "VRAM profile: 16gb, 16GiB, 16384MiB, a GPU name (vramcap profiles), "
           "or a user profile", "P"),
    Option("profiles-file", Path, None, "user-defined profiles ([profiles.NAME] tables)", "TOML"),
    Option("agents", positive_int, None, "parallel agents (slots); left out: vramcap plan solves for the most that "
           "fit, pytest plans 4; ROLE=N for one model of several", "N", pytest_default=DEFAULT_AGENTS, per_role=True),
    Option("ctx-per-agent", positive_int, None, "context per agent (Ollama num_ctx); left out: vramcap plan solves for "
           "the largest that fits, pytest plans 8192; ROLE=C for one model of several", "C", aliases=("ctx",),
           pytest_default=DEFAULT_CTX_PER_AGENT, per_role=True),
    Option("kv-cache", choice(KV_CACHE_TYPES), "f16", "KV cache type: f16 (default), q8_0, q4_0...", "TYPE"),
    Option("flash-attn", choice(ON_OFF), "on", "flash attention (a quantized KV cache needs it on)", "on|off"),
    Option("ubatch", positive_int, DEFAULT_UBATCH, f"llama.cpp -ub (default {DEFAULT_UBATCH})", "U"),
    Option("gpu-layers", gpu_layers, None, "layers on the GPU incl. the output layer (-ngl); default all", "N"),
    Option("n-cpu-moe", non_negative_int, 0, "keep the expert weights of the first N layers on the CPU "
           "(llama-server --n-cpu-moe; MoE models)", "N"),
    Option("fit-margin", non_negative_int, DEFAULT_FIT_MARGIN_MIB,
           f"free memory llama.cpp --fit keeps per GPU (default {DEFAULT_FIT_MARGIN_MIB})", "MIB"),
    Option("kv-unified", boolean, False, "one shared KV pool (llama-server -kvu)", flag=True),
    Option("ollama-url", ollama_url, None, f"Ollama base URL for ollama:NAME (default $OLLAMA_HOST, then "
           f"{DEFAULT_OLLAMA_URL})", "URL"),
)
"""What decides the plan: the model, the profile and the server config."""

ENGINE_OPTIONS: tuple[Option, ...] = (
    Option("models-dir", Path, None, "where shapes are synthesized (default ~/.cache/pytest-vramcap/models)", "DIR"),
    Option("startup-timeout", positive_float, DEFAULT_STARTUP_TIMEOUT_S,
           "seconds to wait for the server to become healthy", "S"),
    Option("fit", choice(ON_OFF), "off", "off: pin the plan's layers (-ngl, --fit off), an overflow is an OOM; "
           "on: llama.cpp --fit as under Ollama, an overflow spills to the CPU", "on|off"),
)
"""How the embedded llama-server is started (vramcap serve and pytest)."""

# The pytest plugin's and the Locust file's: a ballast makes a bigger GPU offer only the profile's memory.
EMULATE = Option("emulate", choice(EMULATE_MODES), "auto", "hold a VRAM ballast so a bigger GPU offers only the "
                 "profile's memory (auto: when the GPU is bigger)", "MODE")
REQUEST_TIMEOUT = Option("request-timeout", positive_float, DEFAULT_REQUEST_TIMEOUT_S,
                         "seconds the engine may stay silent (before its first token, or between two) before a "
                         f"request fails as a timeout (default {DEFAULT_REQUEST_TIMEOUT_S:g})", "S")
"""Shared by pytest, ``vramcap load``/``capacity`` and the Locust file: a hung engine ends requests, not runs."""

RUN_OPTIONS: tuple[Option, ...] = (
    Option("engine", choice(ENGINE_CHOICES), "auto", "auto (a URL if given, else the embedded llama-server), "
           "llamacpp, ollama (start `ollama serve` from $VRAMCAP_OLLAMA or PATH, else attach to "
           "--vramcap-ollama-url / $OLLAMA_HOST), or url", "KIND"),
    Option("server-url", http_url, None, "attach to this server instead of starting one", "URL"),
    Option("report-dir", Path, Path(DEFAULT_REPORT_DIR), "where the JSON run report goes", "DIR"),
    Option("min-speedup", positive_float, None, "override every scenario's minimum parallel speedup", "X"),
    Option("rounds", positive_int, None, "interleaved sequential/parallel rounds, every one run for every scenario; "
           "the speedup is their median (default: as many as a scenario's verdicts read, up to "
           f"{DEFAULT_ROUNDS})", "N"),
    REQUEST_TIMEOUT,
    Option("prompt-cache", choice(ON_OFF), "on", "on (as engines run; each pass starts cold for its own prompts) "
           "or off (llama-server's cache_prompt false: no prefill reused)", "on|off"),
    EMULATE,
    Option("save-baseline", baseline_name, None, "store this run as baseline NAME (<baseline-dir>/NAME.json), or at "
           "a .json path", "NAME"),
    Option("compare", baseline_name, None, "compare this run with baseline NAME (or a .json baseline or run "
           "report) and fail it on a regression", "NAME"),
    Option("compare-fail", compare_fail, compare_fail(DEFAULT_COMPARE_FAIL), "how much worse than the baseline a "
           "metric may get: METRIC:PERCENT% or METRIC:AMOUNT, comma-separated (default "
           f"{DEFAULT_COMPARE_FAIL}); half the rounds' spread is allowed on top when it is larger", "EXPR"),
    Option("baseline-runs", positive_int, DEFAULT_BASELINE_RUNS, "runs a baseline keeps: saving again adds this run "
           f"and drops the oldest beyond N, so the gate learns the machine's run-to-run noise (default "
           f"{DEFAULT_BASELINE_RUNS}; 1 replaces)", "N"),
    Option("baseline-dir", Path, Path(DEFAULT_BASELINE_DIR), f"where named baselines live (default "
           f"{DEFAULT_BASELINE_DIR} under the rootdir)", "DIR"),
)
"""What a pytest run does with the server and its results (plugin only)."""


def add_options(addoption: Callable[..., Any], options: Iterable[Option], *, prefix: str = "",
                dest_prefix: str = "", with_defaults: bool = True, required: Collection[str] = ()) -> None:
    """Register ``options`` through ``addoption`` (argparse's ``add_argument`` or pytest's ``addoption``).

    ``with_defaults=False`` leaves every default None, so the caller can tell an
    option that was not given from one given with its default value (the plugin
    then falls back to the ini file).
    """
    for option in options:
        kwargs: dict[str, Any] = {"dest": dest_prefix + option.dest, "help": option.help}
        if option.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = option.default if with_defaults else None
        if option.flag:
            kwargs["action"] = "store_true"
        elif option.per_role:
            kwargs.update(action="append", type=argparse_type(option.parse_value), metavar=option.metavar)
        else:
            kwargs.update(type=argparse_type(option.parse), metavar=option.metavar)
        addoption(*option.flags(prefix), **kwargs)


def with_run_defaults(values: dict[str, Any], options: Iterable[Option]) -> dict[str, Any]:
    """``values`` (by ``dest``) with every option left out given the default of a run (a concrete model and
    slots, as the plugin's): ``vramcap load`` and the locustfile plan like the plugin does."""
    for option in options:
        if values.get(option.dest) is None:
            values[option.dest] = option.default_for_pytest()
    return values


def plan_change(text: str) -> tuple[str, Any]:
    """``ctx-per-agent=16384`` -> ("ctx_per_agent", 16384): one plan option changed, parsed by its own parser
    (``vramcap plan --compare``)."""
    name, sep, value = (part.strip() for part in text.partition("="))
    name = name.removeprefix("--")
    for option in PLAN_OPTIONS:
        if name in (option.name, *option.aliases, option.dest):
            if not sep:
                raise ValueError(f"{text[:60]!r}: use {option.name}=VALUE")
            return option.dest, option.parse(value)
    names = ", ".join(option.name for option in PLAN_OPTIONS)
    raise ValueError(f"{text[:60]!r}: use OPTION=VALUE with OPTION one of {names}")


DEFAULT_ROLE = "model"
"""The role of the one model of a run that names none (``--model SRC``)."""

ROLE_OPTIONS = ("agents", "ctx_per_agent")
"""The per-role options besides ``model``: a value without a role applies to every model a ROLE= form does not
name."""


def _role_list(value: Any) -> list[RoleValue[Any]]:
    """An option's value as a list of RoleValue (a plain value, as tests and defaults give it, is one)."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [item if isinstance(item, RoleValue) else RoleValue(None, item) for item in items]


def role_values(values: dict[str, Any] | Any, *, prefix: str = "") -> dict[str, dict[str, Any]]:
    """The option values (by ``dest``) of each model role, in the order the models were given: ``model``,
    ``agents`` and ``ctx_per_agent`` become that role's plain values, the rest is shared.

    ``--model SRC`` alone is one model of role ``model``; ``--model chat=A --model embed=B`` two. ``--agents 4``
    applies to every model, ``--agents chat=4`` to one; a value given again without a role replaces the earlier
    one, as for any option. Raises ConfigError (one line, options named with ``prefix``) for a role named twice,
    a model without a role beside models with one, or a role no model has.
    """
    models = _role_list(values["model"])
    if not models:
        raise ConfigError(f"--{prefix}model is required")
    unnamed = [item for item in models if item.role is None]
    if len(unnamed) == len(models):
        models = unnamed[-1:]  # given again without a role: the last one wins, as for any option
    elif unnamed:
        raise ConfigError(f"--{prefix}model {unnamed[0]} names no role beside models that do: name each model "
                          f"ROLE=SRC (--{prefix}model chat={unnamed[0]})")
    roles = [item.role or DEFAULT_ROLE for item in models]
    twice = sorted({role for role in roles if roles.count(role) > 1})
    if twice:
        raise ConfigError(f"--{prefix}model: role {twice[0]} is named twice")
    by_role = {role: {**values, "model": item.value} for role, item in zip(roles, models, strict=True)}
    for dest in ROLE_OPTIONS:
        flag = f"--{prefix}{dest.replace('_', '-')}"
        items = _role_list(values.get(dest))
        shared = [item for item in items if item.role is None][-1:]  # the last value without a role wins
        named: dict[str, Any] = {}
        for item in items:
            if item.role is None:
                continue
            if item.role not in by_role:
                raise ConfigError(f"{flag} {item}: no model has role {item.role} (roles: {', '.join(by_role)})")
            if item.role in named:
                raise ConfigError(f"{flag}: role {item.role} is named twice")
            named[item.role] = item.value
        for role, role_dict in by_role.items():
            role_dict[dest] = named.get(role, shared[0].value if shared else None)
    return by_role


def single_model_values(values: dict[str, Any], *, prefix: str = "", command: str = "this command") -> dict[str, Any]:
    """The values of a run of one model; ConfigError when ``--model ROLE=SRC`` names several."""
    roles = role_values(values, prefix=prefix)
    if len(roles) > 1:
        raise ConfigError(f"{command} runs one model; --{prefix}model names {len(roles)} ({', '.join(roles)}): "
                          f"plan them with vramcap plan, run them with pytest")
    return next(iter(roles.values()))
