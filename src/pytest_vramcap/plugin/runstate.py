"""The run state: the plans, the servers (one per model) and the GPU of a vramcap pytest run, without hooks.

The plugin creates one per process in ``pytest_configure`` and keeps it in
``config.stash``. The xdist controller (or a plain run) starts the servers on
first use; a worker attaches to the controller's URLs and never stops them.
Hooks live on the :class:`~.reporter.Reporter` and the :class:`~.xdist.XdistBridge`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..defaults import DEFAULT_ROUNDS
from ..engines.attached import AttachedServer
from ..engines.base import EngineEvidence, Server
from ..engines.provision import check_gpu_room, check_plans_run_on, new_servers
from ..errors import EngineError
from ..gpu.emulation import emulation_applies, running_profile
from ..load.proxy.router import ModelRoute
from ..load.run.apps import check_graph, run_on_process_loop
from ..load.run.rounds import ScenarioRun, speedup_settled
from ..load.run.steps import run_both
from ..load.scenario.schema import Scenario
from ..net import redact
from ..planner.modelset import PlanSet
from ..planner.plan import Plan
from ..planner.profiles import Profile
from .console import Console
from .settings import PREFIX, Settings

if TYPE_CHECKING:
    from ..gpu.ballast import CardBallasts
    from ..gpu.nvml import GpuInfo, MemorySampler
    from ..load.scenario.graph_source import Builder

__all__ = ["RunState"]


class RunState:
    def __init__(self, settings: Settings, plans: PlanSet, console: Console,
                 worker_servers: dict[str, tuple[str, str | None]] | None = None) -> None:
        from ..gpu.nvml import detect_gpus, visible_gpus

        self.settings = settings
        self.plans = plans
        self.console = console
        self.worker_servers = worker_servers
        """The controller's servers by model role (URL, model name requests carry), on an xdist worker."""
        self.servers: dict[str, Server] = {}
        """One server per model role, in the plans' order (started, or being started)."""
        self.server_error: EngineError | None = None
        self._started = False
        self.gpus, self.gpu_reason = detect_gpus()
        self.visible: list[GpuInfo] = visible_gpus(self.gpus)
        """The GPUs CUDA sees, in its order: card ``i`` of a profile of several runs on ``visible[i]``."""
        self.gpu = self.visible[0] if self.visible else None
        self.ballast: CardBallasts | None = None
        self.sampler: MemorySampler | None = None

    @property
    def plan(self) -> Plan:
        """The first model's plan: the run's plan when it has one model."""
        return self.plans.primary

    @property
    def server(self) -> Server | None:
        """The first model's server (None before it was made)."""
        return self.servers.get(self.plans.roles[0])

    # ------------------------------------------------------------------ GPU

    def emulates(self) -> bool:
        """Whether this run makes a bigger GPU offer only the profile's memory (gpu/emulation.py).

        Raises ConfigError with one line when emulation is asked for and cannot be done.
        """
        return emulation_applies(self.settings.emulate, self.settings.engine, self.visible, self.gpu_reason,
                                 self.plan.profile)

    @property
    def cards(self) -> list[GpuInfo]:
        """The GPUs the plan runs on: as many as its profile names cards, from CUDA's device 0."""
        return self.visible[:len(self.plan.profile.cards)]

    def running_profile(self) -> Profile | None:
        """The profile of the GPU that really runs, when it emulates a smaller card and we know it.

        Its CUDA context, cuBLAS and pool are what the server pays (the H100's ~600 MiB, not a
        consumer card's ~470), so the plan uses its overhead.
        """
        if self.gpu is None or not self.emulates():
            return None
        return running_profile(self.gpu)

    def emulate_profile(self) -> None:
        """Hold the ballast for the whole run when :meth:`emulates` (controller only)."""
        if not self.emulates():
            return
        from ..gpu.ballast import CardBallasts

        self.ballast = CardBallasts([card.usable_mib for card in self.plan.profile.cards],
                                    [gpu.uuid for gpu in self.cards]).hold()

    def _start_sampler(self) -> None:
        """Follow every model's process on the GPU (a llama-server each, or each Ollama runner)."""
        pids = tuple(dict.fromkeys(server.pid for server in self.servers.values() if server.pid is not None))
        if self.gpu is None or not pids:
            return
        from ..gpu.nvml import MemorySampler

        self.sampler = MemorySampler(tuple(card.uuid for card in self.cards), pids=pids).start()

    # --------------------------------------------------------------- server

    def ensure_server(self) -> Server:
        """Start (or attach to) every model's server on first use, one after another as Ollama loads them; one
        set per run. A failed start is remembered. Returns the first model's server."""
        if self.server_error is not None:
            raise self.server_error
        if self._started:
            return self.servers[self.plans.roles[0]]
        try:
            # Kept even when one fails to start: its log is the evidence of an OOM at load.
            self.servers = self._new_servers()
            for server in self.servers.values():
                server.start()
            self._started = True
        except EngineError as exc:
            self.server_error = exc
            raise
        finally:
            self._start_sampler()
        return self.servers[self.plans.roles[0]]

    def _new_servers(self) -> dict[str, Server]:
        settings = self.settings
        if self.worker_servers:
            return {role: AttachedServer(url, startup_timeout_s=settings.startup_timeout, request_model=model)
                    for role, (url, model) in self.worker_servers.items()}
        return new_servers(self.plans, settings.engine_setup(), announce=self.console.announce,
                           uncaptured=self.console.uncaptured)

    def check_gpu_room(self) -> None:
        """Before the controller starts servers on a real card (not an emulated one: the ballast made its free
        memory the profile's): ConfigError naming what holds the GPU when the plans do not fit what is free."""
        if self.worker_servers or self.settings.engine == "url" or self.ballast is not None:
            return
        plans = self.plans
        check_gpu_room(plans.planned_by_card_mib(), plans.fit_margin_mib, plans.profile)

    def check_engine_can_run_plan(self) -> None:
        """Raise ConfigError (one line) when the chosen engine has no setting for a plan."""
        check_plans_run_on(self.settings.engine, self.plans, prefix=PREFIX)

    def evidence(self, role: str | None = None) -> EngineEvidence:
        """What a model's server (the first's by default) reported so far; nothing when there is no server."""
        server = self.servers.get(role or self.plans.roles[0])
        return server.evidence() if server is not None else EngineEvidence(log=None)

    def evidence_by_role(self) -> dict[str, EngineEvidence]:
        """Every model's evidence, by role."""
        return {role: self.evidence(role) for role in self.plans.roles}

    def stop(self) -> None:
        """Stop what this process started (idempotent): the servers, the sampler, the ballast."""
        for server in reversed(self.servers.values()):  # a model beside another on one Ollama before the first
            server.stop()  # an attached server (a worker's view of the controller's) is left alone
        if self.sampler is not None:
            self.sampler.stop()
        if self.ballast is not None:
            self.ballast.release()

    # ---------------------------------------------------------------- runs

    def run_scenario(self, scenario: Scenario, build: Builder | None = None, *, collected: bool = False,
                     minimum: float | None = None) -> ScenarioRun:
        """Rounds of both passes on the run's server; a graph's builder may be given as ``build``. A ``collected``
        scenario file, judged by the plugin against ``minimum`` (the speedup it must reach), runs the rounds its
        verdicts read (:meth:`round_plan`); a test's own run runs every round, as the test may judge it any way."""
        if build is None:
            check_graph(scenario)  # a graph that cannot be imported fails before a server is started for it
        rounds, settled = (self.round_plan(scenario, minimum) if collected
                           else (self.settings.rounds or DEFAULT_ROUNDS, None))
        server = self.ensure_server()
        return run_on_process_loop(run_both(server.url, scenario, build=build, model=server.request_model,
                                            rounds=rounds, prompt_cache=self.settings.prompt_cache,
                                            routes=self.model_routes(),
                                            read_timeout_s=self.settings.request_timeout, settled=settled))

    def round_plan(self, scenario: Scenario, minimum: float | None) -> tuple[int, Callable[[ScenarioRun], bool] | None]:
        """The rounds a collected scenario file runs, and the rule that may stop them sooner.

        ``--vramcap-rounds N`` given: N, every one. Otherwise what its verdicts read across rounds: every one of
        DEFAULT_ROUNDS for a latency objective (a p95 over all their requests) or a baseline saved or compared (the
        gate's allowances in docs/benchmarks.md were measured on every round); with a speedup minimum, up to
        DEFAULT_ROUNDS, stopping once the median's side of it is settled (:func:`speedup_settled`); else one. The
        other verdicts judge each request or pass on its own (OOM, offload, slots, context, prompt cache, client
        options): a second round repeats their evidence, and the speedup it would refine gates nothing."""
        settings = self.settings
        if settings.rounds is not None:
            return settings.rounds, None
        if scenario.expect.slo.items() or settings.compare is not None or settings.save_baseline is not None:
            return DEFAULT_ROUNDS, None
        if minimum is None:
            return 1, None
        return DEFAULT_ROUNDS, speedup_settled(minimum, DEFAULT_ROUNDS)

    def model_routes(self) -> list[ModelRoute]:
        """With several models, where each role's requests go; a client names a model by its role, by the model as
        given (``--vramcap-model ROLE=SRC``'s SRC) or by the engine's name for it. None with one model."""
        if not self.plans.several:
            return []
        given = self.settings.model_names()
        return [ModelRoute(server.url, server.request_model, role,
                           frozenset(name for name in (role, given.get(role), server.request_model) if name))
                for role, server in self.servers.items()]

    def min_speedup_for(self, scenario: Scenario, marker_value: float | None = None) -> float | None:
        """The command line wins over a test's marker, which wins over the scenario file."""
        return self.settings.min_speedup or marker_value or scenario.expect.min_speedup

    # -------------------------------------------------------------- report

    def engine_report(self) -> dict[str, Any]:
        """The engine as the report records it: the first model's server, and with several models each by role."""
        engine: dict[str, Any] = {"kind": self.settings.engine,
                                  "url": redact(self.server.url) if self.server else None}
        if self.server is not None:
            engine.update(self.server.describe())
        if self.plans.several:
            engine["models"] = {role: {"url": redact(server.url), **server.describe()}
                                for role, server in self.servers.items()}
        return engine

    def gpu_report(self) -> dict[str, Any]:
        ballast = self.ballast
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "reason": self.gpu_reason,
            "device": self.gpu.to_dict() if self.gpu else None,
            "emulated_profile": None if ballast is None else {
                "profile": self.plan.profile.name, "free_target_mib": self.plan.profile.usable_mib,
                "ballast_mib": ballast.held_mib, "free_before_mib": ballast.free_before_mib,
                **({"cards": ballast.by_card()} if len(ballast.cards) > 1 else {})},
            "measured": self._measured(),
        }

    def _measured(self) -> dict[str, Any] | None:
        """NVML's samples; with several models, each model's process peak beside its plan's total."""
        if self.sampler is None:
            return None
        measured = self.sampler.to_dict(timeline=True)
        if "cards" in measured:  # several cards: each one's plan beside its peak, and what the ballast held there
            held = self.ballast.by_card() if self.ballast is not None else []
            for index, (card, planned) in enumerate(zip(measured["cards"], self.plans.planned_by_card_mib(),
                                                        strict=False)):
                card.update(index=index, name=self.cards[index].name, planned_mib=planned,
                            ballast_mib=held[index]["ballast_mib"] if index < len(held) else 0)
        if self.plans.several:
            measured["by_model"] = {
                role: {"pid": server.pid, "planned_mib": round(self.plans.plans[role].total_mib, 1),
                       "peak_process_mib": self.sampler.peak_of(server.pid) if server.pid is not None else None}
                for role, server in self.servers.items()}
        return measured

    def peak_vram_between(self, start: float, end: float) -> float | None:
        """The server's peak GPU memory (MiB) between two ``time.monotonic()`` readings, when NVML sampled it."""
        if self.sampler is None:
            return None
        return self.sampler.peak_between(start, end, self.ballast.held_mib if self.ballast is not None else 0.0)
