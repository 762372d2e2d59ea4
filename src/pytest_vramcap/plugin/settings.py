"""The plugin's settings: the shared option table, resolved from the command line, the ini file and defaults.

Every option ``--vramcap-NAME`` has an ini key ``vramcap_NAME``; the command line
wins over the ini file, which wins over the defaults. Defaults make the bare
``pytest --vram-profile=16gb`` work on a fresh machine: the embedded llama-server
with a synthesized 254 MB model. Values are parsed when pytest reads its options,
so a bad one is a usage error before anything starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..defaults import DEFAULT_BASELINE_RUNS, DEFAULT_COMPARE_FAIL, DEFAULT_REQUEST_TIMEOUT_S
from ..errors import ConfigError
from ..options import ENGINE_OPTIONS, PLAN_OPTIONS, RUN_OPTIONS, Option, add_options, role_values, single_model_values
from ..parsers import argparse_type, compare_fail, non_empty
from ..types import EmulateMode, EngineKind

if TYPE_CHECKING:
    from ..engines.provision import EngineSetup
    from ..model.source import ModelSource

__all__ = ["PROFILE_OPTION", "Settings", "add_pytest_options"]

PREFIX = "vramcap-"
DEST_PREFIX = "vramcap_"
# The headline option keeps its documented name and enables the plugin; the
# profile option of the table is registered under it rather than as --vramcap-profile.
PROFILE_OPTION = "--vram-profile"
_TABLE_OPTIONS = tuple(option for option in (*PLAN_OPTIONS, *ENGINE_OPTIONS, *RUN_OPTIONS) if option.name != "profile")


def add_pytest_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vramcap", "VRAM capacity tests (pytest-vramcap)")
    group.addoption(PROFILE_OPTION, dest="vram_profile", default=None, type=argparse_type(non_empty),
                    metavar="PROFILE", help="VRAM budget to plan and test against: 16gb, 24GiB, rtx4080, h100-80gb... "
                                            "(enables the plugin)")
    parser.addini("vramcap_vram_profile", f"default for {PROFILE_OPTION}", default=None)
    add_options(group.addoption, _TABLE_OPTIONS, prefix=PREFIX, dest_prefix=DEST_PREFIX, with_defaults=False)
    for option in _TABLE_OPTIONS:
        for name in (option.name, *option.aliases):
            if option.per_role:  # one value per line: chat=qwen2.5-7b, then embed=qwen3-embedding-0.6b
                parser.addini(_ini_key(name), f"default for --{PREFIX}{option.name} (one per line)", type="linelist")
            else:
                parser.addini(_ini_key(name), f"default for --{PREFIX}{option.name}", default=None)


def _ini_key(name: str) -> str:
    return DEST_PREFIX + name.replace("-", "_")


def _lookup(config: pytest.Config, option: Option) -> tuple[Any, Path]:
    """Command line, then the ini file (the option's name, then its aliases), then the plugin's default; with
    the directory a relative path in the value is taken against.

    That is the way pytest takes its own paths: from the command line against the
    directory pytest was started in, from the ini file against that file's
    directory, and a default against the rootdir.
    """
    value = config.getoption(DEST_PREFIX + option.dest)
    if value is not None:
        return value, config.invocation_params.dir
    base = config.inipath.parent if config.inipath else config.rootpath
    for name in (option.name, *option.aliases):
        raw = config.getini(_ini_key(name))
        if raw not in (None, "", []):
            try:
                if isinstance(raw, list):
                    return [option.parse_value(str(line)) for line in raw], base
                return option.parse(str(raw)), base
            except (ValueError, TypeError) as exc:
                raise pytest.UsageError(f"ini key {_ini_key(name)}: {exc}") from None
    return option.default_for_pytest(), config.rootpath


def _against(value: Any, base: Path) -> Any:
    """A relative path taken against ``base``; anything else as it is."""
    return base / value if isinstance(value, Path) and not value.is_absolute() else value


def _baseline_file(ref: str | None, base: Path, directory: Path) -> Path | None:
    """A baseline name as ``directory/NAME.json``; a ``.json`` path against ``base``, like any path option."""
    if ref is None:
        return None
    return base / ref if ref.endswith(".json") else directory / f"{ref}.json"


@dataclass(frozen=True)
class Settings:
    """What the user asked this pytest run to do."""

    engine: EngineKind
    plan_values: Mapping[str, Any]
    """The plan options by ``dest`` (profile included): the input of ``plan_from_options``."""
    server_url: str | None
    report_dir: Path
    min_speedup: float | None
    rounds: int | None
    """``--vramcap-rounds`` as given: every round runs; None lets each scenario run the rounds its verdicts read."""
    prompt_cache: bool
    startup_timeout: float
    models_dir: Path | None
    fit: bool
    emulate: EmulateMode
    save_baseline: Path | None = None
    """Where to store this run as a baseline (``--vramcap-save-baseline``)."""
    compare: Path | None = None
    """The baseline (or run report) to compare with (``--vramcap-compare``)."""
    compare_fail: tuple[tuple[str, float, bool], ...] = compare_fail(DEFAULT_COMPARE_FAIL)
    baseline_runs: int = DEFAULT_BASELINE_RUNS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    """How long the engine may stay silent before a request fails as a timeout (``--vramcap-request-timeout``)."""

    @property
    def profile(self) -> str:
        return str(self.plan_values["profile"])

    @property
    def model(self) -> str:
        """The models as given: ``small:F16``, or ``chat=qwen2.5-7b embed=qwen3-embedding-0.6b``."""
        value = self.plan_values["model"]
        return " ".join(str(item) for item in value) if isinstance(value, list) else str(value)

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings | None:
        """None when the plugin is not enabled (no --vram-profile and no ini default)."""
        profile = config.getoption("vram_profile") or config.getini("vramcap_vram_profile")
        if not profile:
            return None
        found = {option.dest: _lookup(config, option) for option in _TABLE_OPTIONS}
        values = {dest: _against(value, base) for dest, (value, base) in found.items()}
        values["profile"] = str(profile).strip()
        from ..engines.provision import resolve_engine

        try:
            engine, server_url = resolve_engine(values["engine"], values["server_url"], values["ollama_url"],
                                                prefix=PREFIX)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            not_a_dir = values["report_dir"].exists() and not values["report_dir"].is_dir()
        except OSError as exc:
            raise pytest.UsageError(f"--{PREFIX}report-dir: {exc.strerror or exc}") from None
        if not_a_dir:
            raise pytest.UsageError(f"--{PREFIX}report-dir {values['report_dir']} is not a directory")
        return cls(engine=engine,
                   plan_values={option.dest: values[option.dest] for option in PLAN_OPTIONS},
                   server_url=server_url, report_dir=values["report_dir"], min_speedup=values["min_speedup"],
                   rounds=values["rounds"], prompt_cache=values["prompt_cache"] == "on",
                   startup_timeout=values["startup_timeout"], models_dir=values["models_dir"],
                   fit=values["fit"] == "on", emulate=values["emulate"],
                   save_baseline=_baseline_file(*found["save_baseline"], values["baseline_dir"]),
                   compare=_baseline_file(*found["compare"], values["baseline_dir"]),
                   compare_fail=values["compare_fail"], baseline_runs=values["baseline_runs"],
                   request_timeout=values["request_timeout"])

    def model_source(self) -> ModelSource:
        """The model to plan, as the engine takes it (:func:`~pytest_vramcap.engines.provision.model_source_for`)."""
        from ..engines.provision import model_source_for

        return model_source_for(self.engine, single_model_values(dict(self.plan_values), prefix=PREFIX),
                                self.server_url, prefix=PREFIX)

    def model_sources(self) -> dict[str, ModelSource]:
        """Each model role's source, as the engine takes it; ConfigError where the engine runs one model only."""
        from ..engines.provision import model_source_for

        roles = role_values(dict(self.plan_values), prefix=PREFIX)
        if len(roles) > 1 and self.engine == "url":
            raise ConfigError(f"--{PREFIX}engine=url attaches to one model; several models (--{PREFIX}model "
                              f"ROLE=SRC) run on the embedded llama-server (one each) or on one Ollama "
                              f"(--{PREFIX}engine=ollama, started or attached by URL)")
        return {role: model_source_for(self.engine, values, self.server_url, prefix=PREFIX)
                for role, values in roles.items()}

    def model_names(self) -> dict[str, str]:
        """Each model role's ``--vramcap-model`` value as given (``ollama:`` left off: a client names it without)."""
        return {role: str(values["model"]).removeprefix("ollama:")
                for role, values in role_values(dict(self.plan_values), prefix=PREFIX).items()}

    def engine_setup(self) -> EngineSetup:
        from ..engines.provision import EngineSetup

        return EngineSetup(engine=self.engine, server_url=self.server_url, models_dir=self.models_dir,
                           log_dir=self.report_dir / "logs", startup_timeout_s=self.startup_timeout, fit=self.fit)
