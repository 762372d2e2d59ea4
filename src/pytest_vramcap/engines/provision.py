"""From a plan to a server: which engine, which model source, and the one place that builds it.

The pytest plugin, ``vramcap serve`` and the Locust file all start servers; they name the
engine the same way (``llamacpp``, ``ollama``, ``url``) and get it built here, so a
behaviour (Ollama's refusals, a synthesized model, attaching when there is no binary) is
written once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..defaults import DEFAULT_HOST, DEFAULT_STARTUP_TIMEOUT_S
from ..errors import ConfigError, EngineStartError, ModelSourceError
from ..net import ollama_host_url, redact
from ..types import EmulateMode, EngineChoice, EngineKind
from .attached import AttachedServer
from .base import Server

if TYPE_CHECKING:
    from ..gpu.nvml import GpuInfo
    from ..model.source import ModelSource
    from ..planner.modelset import PlanSet
    from ..planner.plan import Plan
    from ..planner.profiles import Profile
    from .ollama import OllamaServer

__all__ = ["EngineSetup", "check_gpu_room", "check_plan_runs_on", "check_plans_run_on", "model_source_for",
           "new_server", "new_servers", "plan_for_engine", "resolve_engine"]


@dataclass(frozen=True)
class EngineSetup:
    """How to start (or reach) the server of a plan."""

    engine: EngineKind
    server_url: str | None = None
    """The server to attach to (``url``), or the Ollama to attach to when there is no ``ollama`` binary."""
    models_dir: Path | None = None
    """Where a shape is synthesized (None: the models cache)."""
    log_dir: Path | None = None
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    fit: bool = False
    host: str = DEFAULT_HOST
    port: int | None = None
    """None picks a free port."""
    emulate_on: tuple[GpuInfo, ...] = ()
    """The bigger GPUs ballasts make look like the plan's cards while the server runs, card ``i`` on the ``i``-th
    (gpu/emulation.py); empty: none."""


def resolve_engine(choice: EngineChoice, server_url: str | None, ollama_url: str | None = None, *,
                   prefix: str = "") -> tuple[EngineKind, str | None]:
    """``auto`` becomes ``url`` with a server URL, else ``llamacpp``; Ollama without a URL attaches (when it has no
    binary) to ``ollama_url``, then ``$OLLAMA_HOST``. Raises ConfigError naming the options with ``prefix``."""
    engine: EngineKind = ("url" if server_url else "llamacpp") if choice == "auto" else choice
    if engine == "url" and not server_url:
        raise ConfigError(f"--{prefix}engine=url needs --{prefix}server-url")
    if engine == "ollama" and not server_url:
        server_url = ollama_url or ollama_host_url(os.environ.get("OLLAMA_HOST"))
    return engine, server_url


def model_source_for(engine: EngineKind, plan_values: Mapping[str, Any], server_url: str | None = None, *,
                     prefix: str = "") -> ModelSource:
    """The model to plan. With Ollama, the model option is a GGUF or a shape (sent to Ollama as a blob), or else
    one of Ollama's own models (``ollama:NAME`` or a plain name)."""
    from ..model.source import OllamaModel
    from ..planner.resolve import model_source_from_options

    model = str(plan_values["model"])
    if engine == "ollama":
        if not model.startswith("ollama:"):
            try:
                local = model_source_from_options(plan_values)
            except ModelSourceError:  # not a file or a shape: a name Ollama knows
                local = None
            if local is not None and not isinstance(local, OllamaModel):
                return local
        return OllamaModel(model.removeprefix("ollama:"), server_url)
    source = model_source_from_options(plan_values)
    if engine == "llamacpp" and isinstance(source, OllamaModel):
        raise ModelSourceError(f"--{prefix}model {source}: an Ollama model needs --{prefix}engine=ollama")
    return source


def check_plan_runs_on(engine: EngineKind, plan: Plan, *, prefix: str = "") -> None:
    """Raise ConfigError (one line) when the engine has no setting for the plan."""
    if engine == "ollama":
        from ..planner.render import ollama_refusal

        refused = ollama_refusal(plan.config, plan.spec)
        if refused:
            raise ConfigError(f"--{prefix}engine=ollama: {refused}")


def check_plans_run_on(engine: EngineKind, plans: PlanSet, *, prefix: str = "") -> None:
    """:func:`check_plan_runs_on` for every model; on Ollama, also that no two roles are one model file: Ollama
    keys its runners by file (server/sched.go schedulerModelKey), so they would share one runner, or reload it
    in turn when their options differ."""
    for plan in plans.plans.values():
        check_plan_runs_on(engine, plan, prefix=prefix)
    if engine != "ollama":
        return
    seen: dict[str, str] = {}
    for role, plan in plans.plans.items():
        source = str(plan.spec.source)
        if source in seen:
            raise ConfigError(f"--{prefix}engine=ollama: roles {seen[source]} and {role} are both {source}, and "
                              f"Ollama runs one runner per model file: make them one role whose agents share it")
        seen[source] = role


def check_gpu_room(planned_by_card_mib: Sequence[float], fit_margin_mib: int, profile: Profile) -> None:
    """ConfigError (one line naming what holds the GPU) when a card the plan runs on (card ``i`` on CUDA's device
    ``i``) has less free memory than the plan's peak there plus the --fit margin (a plan over its profile needs no
    more than the card: its own overrun is the verdicts' to report), or when the host has fewer GPUs than the
    profile names cards. Nothing to check without a GPU."""
    from ..gpu.emulation import check_cards_present
    from ..gpu.nvml import detect_gpus, visible_gpus
    from ..gpu.room import read_room, shortfall

    gpus = visible_gpus(detect_gpus()[0])
    check_cards_present(profile, gpus)
    for gpu, planned, card in zip(gpus, planned_by_card_mib, profile.cards, strict=False):  # the first cards
        room = read_room(gpu)
        message = shortfall(room, min(planned + fit_margin_mib, card.usable_mib)) if room is not None else None
        if message is not None:
            raise ConfigError(message)


def plan_for_engine(values: Mapping[str, Any], choice: EngineChoice, *,
                    prefix: str = "") -> tuple[Plan, EngineSetup]:
    """The plan of the option table's ``values`` (plan and engine options, by ``dest``) as ``choice`` will serve
    it, and how to start that engine; ConfigError / ModelSourceError when it cannot."""
    from ..options import single_model_values
    from ..planner.resolve import plan_from_options

    values = single_model_values(dict(values), prefix=prefix, command="this command")
    engine, url = resolve_engine(choice, None, values.get("ollama_url"), prefix=prefix)
    plan = plan_from_options(values, model_source_for(engine, values, url, prefix=prefix))
    check_plan_runs_on(engine, plan, prefix=prefix)
    gpus = _gpus_to_emulate_on(values.get("emulate") or "off", engine, plan, prefix)
    if gpus:
        from ..gpu.emulation import running_profile
        from ..planner import make_plan

        running = running_profile(gpus[0])
        if running is not None:  # the server pays the big GPU's CUDA overhead, not the emulated card's
            plan = make_plan(plan.spec, plan.profile.with_overhead_of(running), plan.request)
    elif engine == "llamacpp" or (engine == "ollama" and _has_ollama()):  # a server of our own is about to start
        check_gpu_room(plan.planned_by_card_mib(), plan.fit_margin_mib, plan.profile)
    return plan, EngineSetup(engine=engine, server_url=url, models_dir=values.get("models_dir"),
                             startup_timeout_s=values["startup_timeout"], fit=values["fit"] == "on", emulate_on=gpus)


def _gpus_to_emulate_on(mode: EmulateMode, engine: EngineKind, plan: Plan, prefix: str) -> tuple[GpuInfo, ...]:
    """The GPUs to hold a ballast on for ``plan``'s cards, card ``i`` on CUDA's device ``i``, or none
    (gpu/emulation.py decides)."""
    from ..gpu.emulation import emulation_applies
    from ..gpu.nvml import detect_gpus, visible_gpus

    gpus, reason = detect_gpus() if mode != "off" and engine == "llamacpp" else ([], "")
    visible = visible_gpus(gpus)
    if not emulation_applies(mode, engine, visible, reason, plan.profile, option=f"--{prefix}emulate"):
        return ()
    return tuple(visible[:len(plan.profile.cards)])


def _only_the_plan_s_cards(plan: Plan, setup: EngineSetup) -> dict[str, str] | None:
    """The environment that keeps llama-server on the cards the plan is for, in the plan's order, on a host of several
    GPUs: by default llama.cpp splits a model over every GPU CUDA shows it, by free memory, so a one-card plan on a
    two-GPU host (or a card a ballast emulates, beside a free one) would not run as planned; and CUDA numbers cards
    fastest first where NVML (our card ``i``) counts them by PCI bus. CUDA_VISIBLE_DEVICES by UUID settles both.
    None: one GPU or none, the environment left alone."""
    from ..gpu.nvml import detect_gpus, visible_gpus

    visible = visible_gpus(detect_gpus()[0])
    cards = list(setup.emulate_on) or visible[:len(plan.profile.cards)]
    if not cards or len(visible) == 1:
        return None
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu.uuid for gpu in cards)}


def _has_ollama() -> bool:
    from .ollama import find_ollama

    return find_ollama() is not None


def new_server(plan: Plan, setup: EngineSetup, *, announce: Callable[[str], None] = print,
               uncaptured: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> Server:
    """The plan's server, not started. ``announce`` gets one line saying what will start; ``uncaptured`` wraps
    a model synthesis (its progress bar must reach the terminal)."""
    if setup.engine == "url":
        assert setup.server_url is not None
        return AttachedServer(setup.server_url, startup_timeout_s=setup.startup_timeout_s)
    if setup.engine == "ollama":
        return _new_ollama(plan, setup, announce, uncaptured)
    from .binary import find_llama_server
    from .llamacpp import EngineOptions, LlamaServer

    binary = find_llama_server()  # before writing gigabytes of model for nothing
    model_path = _model_file(plan, setup, announce, uncaptured)
    options = EngineOptions(host=setup.host, port=setup.port, startup_timeout_s=setup.startup_timeout_s,
                            log_dir=setup.log_dir, fit_margin_mib=plan.fit_margin_mib, fit=setup.fit,
                            env=_only_the_plan_s_cards(plan, setup))
    server = LlamaServer(plan.config, model_path, options, binary=binary)
    announce(f"vramcap: starting llama-server on {server.url} (log {server.log_path})")
    if setup.emulate_on:
        from .emulated import EmulatedServer

        cards = plan.profile.cards
        announce(f"vramcap: {' + '.join(gpu.name for gpu in setup.emulate_on)} emulates {plan.profile.name}: "
                 f"{'a ballast leaves' if len(cards) == 1 else 'ballasts leave'} "
                 f"{' + '.join(f'{card.usable_mib:,}' for card in cards)} MiB free while the server runs")
        return EmulatedServer(server, setup.emulate_on, plan.profile.name, [card.usable_mib for card in cards])
    return server


def new_servers(plans: PlanSet, setup: EngineSetup, *, announce: Callable[[str], None] = print,
                uncaptured: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> dict[str, Server]:
    """Every model's server by role, not started, to start in the plans' order: one model's is
    :func:`new_server`'s; several get a llama-server each (each on a free port), or one Ollama for all (the first
    model's server starts or attaches to it with the set's environment, the others are created beside it)."""
    if not plans.several:
        return {plans.roles[0]: new_server(plans.primary, setup, announce=announce, uncaptured=uncaptured)}
    if setup.engine == "url":
        raise ConfigError("several models cannot share one attached URL: the embedded engine starts a llama-server "
                          "each, the ollama engine creates them all on one Ollama (started, or attached by URL)")
    if setup.engine == "llamacpp":
        each = replace(setup, port=None)
        return {role: new_server(plan, each, announce=announce, uncaptured=uncaptured)
                for role, plan in plans.plans.items()}
    from ..planner.render import ollama_set_env

    env = ollama_set_env([(plan.config, plan.spec) for plan in plans.plans.values()],
                         fit_margin_mib=plans.fit_margin_mib)
    servers: dict[str, Server] = {}
    first: OllamaServer | None = None
    for role, plan in plans.plans.items():
        server = _new_ollama(plan, setup, announce, uncaptured, role=role, env=env, beside=first)
        first = first or server
        servers[role] = server
    return servers


def _new_ollama(plan: Plan, setup: EngineSetup, announce: Callable[[str], None],
                uncaptured: Callable[[], AbstractContextManager[Any]], *, role: str | None = None,
                env: dict[str, str] | None = None, beside: OllamaServer | None = None) -> OllamaServer:
    """``ollama serve`` of our own when there is a binary, else the Ollama at the URL (or the one ``beside``
    runs on); the model created from the plan either way (an Ollama model by name, or our GGUF sent as a blob)."""
    from ..model.source import OllamaModel
    from ..planner.render import ollama_model_name
    from .ollama import OllamaServer, find_ollama

    binary = find_ollama() if beside is None else None
    source = plan.spec.source
    base: str | Path = source.name if isinstance(source, OllamaModel) else \
        _model_file(plan, setup, announce, uncaptured)
    server = OllamaServer(plan.config, base, ollama_model_name(plan.spec, role), fit_margin_mib=plan.fit_margin_mib,
                          binary=binary, url=None if binary else setup.server_url, log_dir=setup.log_dir,
                          startup_timeout_s=setup.startup_timeout_s, host=setup.host, port=setup.port, env=env,
                          beside=beside)
    where = f"starting {binary} serve on {server.url} (log {server.log_path})" if binary else \
        f"adding a model to the same Ollama at {redact(server.url)}" if beside is not None else \
        f"attaching to Ollama at {redact(server.url)}"
    announce(f"vramcap: {where}; model {server.model_name}")
    return server


def _model_file(plan: Plan, setup: EngineSetup, announce: Callable[[str], None],
                uncaptured: Callable[[], AbstractContextManager[Any]]) -> Path:
    from ..model.materialize import materialize_model

    try:
        with uncaptured():
            return materialize_model(plan.spec, setup.models_dir, announce=announce)
    except OSError as exc:  # disk full, a models dir that cannot be written: no server to start
        raise EngineStartError(f"cannot write the model to {setup.models_dir or 'the models cache'}: "
                               f"{exc.strerror or exc}") from None
