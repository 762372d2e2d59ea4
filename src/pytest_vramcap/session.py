"""VramcapSession: the plugin object that owns the plan, the server and the report.

Registered in ``pytest_configure`` when ``--vram-profile`` is given (the
junitxml pattern: state on one object, stored in ``config.stash``). Under
pytest-xdist the controller starts the one server before the workers exist and
hands its URL to them through ``workerinput``; workers attach and never stop it.
Session-level failures (the server died, logged an OOM) fail the run the
pytest-cov way, by counting a failure after the test loop, so teardown still
stops the server and writes the report.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from .engines import AttachedServer, EngineOptions, LlamaServer
from .errors import BadInputError, EngineError
from .fanout import ScenarioRun, run_both
from .planner import Plan, PlanRequest, make_plan
from .report import RunReport, ScenarioResult, summary_table, versions, write_report
from .scenarios import Scenario
from .settings import Settings
from .stashkeys import RESULT_PROPERTY, WORKER_URL_KEY
from .verdicts import FAIL, Verdict, offload_verdict, oom_verdict, slo_verdicts, speedup_verdict

__all__ = ["VramcapSession", "DEFAULT_AGENTS"]

DEFAULT_AGENTS = 4


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_worker(config) and config.getoption("dist", "no") != "no" \
        and bool(config.getoption("numprocesses", None))


class VramcapSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.plan = self._make_plan()
        self.server: LlamaServer | AttachedServer | None = None
        self.server_error: EngineError | None = None
        self.results: list[ScenarioResult] = []
        self.session_verdicts: list[Verdict] = []
        self.report_path: Path | None = None
        from .gpu import detect_gpus, visible_gpu

        self.gpus, self.gpu_reason = detect_gpus()
        self.gpu = visible_gpu(self.gpus)
        self.ballast: Any = None
        self.sampler: Any = None
        if not _is_worker(config):
            self._emulate_profile()

    def _emulate_profile(self) -> None:
        """Make a bigger GPU offer only the profile's memory, for the whole run."""
        mode, usable = self.settings.emulate, self.plan.profile.usable_mib
        if mode == "off" or self.settings.engine != "llamacpp":
            return
        if self.gpu is None:
            if mode == "on":
                raise pytest.UsageError(f"--vramcap-emulate=on needs an NVIDIA GPU: {self.gpu_reason}")
            return
        if self.gpu.total_mib < usable:
            raise pytest.UsageError(f"the GPU ({self.gpu.name}, {self.gpu.total_mib} MiB) is smaller than profile "
                                    f"{self.plan.profile.name} ({usable} MiB usable): test on the real card or a "
                                    f"smaller profile")
        if mode == "auto" and self.gpu.total_mib - usable < 1024:
            return  # the GPU is the profile's size already
        from .ballast import Ballast

        try:
            self.ballast = Ballast(target_free_mib=usable).hold()
        except BadInputError as exc:
            raise pytest.UsageError(str(exc)) from None

    # ------------------------------------------------------------------ plan

    def _make_plan(self) -> Plan:
        from .modelspec import load_model
        from .profiles import resolve_profile

        settings = self.settings
        try:
            profile = resolve_profile(settings.profile)
            # With Ollama the model is one of its own: plan from its /api/show.
            source = f"ollama:{settings.model}" if settings.engine == "ollama" else settings.model
            spec = load_model(source, ollama_url=settings.server_url)
            request = PlanRequest(agents=settings.agents or DEFAULT_AGENTS, ctx_per_agent=settings.ctx,
                                  kv_cache=settings.kv_cache, flash_attn=settings.flash_attn)
        except BadInputError as exc:
            raise pytest.UsageError(str(exc)) from None
        return make_plan(spec, profile, request)

    @property
    def slots(self) -> int:
        return self.plan.config.parallel

    # ---------------------------------------------------------------- server

    def ensure_server(self) -> LlamaServer | AttachedServer:
        """Start (or attach to) the server on first use; one per run."""
        if self.server_error is not None:
            raise self.server_error
        if self.server is not None:
            return self.server
        try:
            self._start_server()
        except EngineError as exc:
            self.server_error = exc
            raise
        assert self.server is not None
        return self.server

    def _start_server(self) -> LlamaServer | AttachedServer:
        settings = self.settings
        worker_url = getattr(self.config, "workerinput", {}).get(WORKER_URL_KEY)
        if worker_url:
            self.server = AttachedServer(worker_url, startup_timeout_s=settings.startup_timeout).start()
            return self.server
        if settings.engine in ("url", "ollama"):
            assert settings.server_url is not None
            health = "/api/version" if settings.engine == "ollama" else "/health"
            self.server = AttachedServer(settings.server_url, startup_timeout_s=settings.startup_timeout,
                                         health_path=health).start()
            return self.server
        from .models import materialize_model

        with self._uncaptured():
            model_path = materialize_model(self.plan.spec, settings.models_dir, announce=self._announce)
        log_dir = settings.report_dir / "logs"
        options = EngineOptions(startup_timeout_s=settings.startup_timeout, log_dir=log_dir,
                                fit_margin_mib=self.plan.fit_margin_mib, fit=settings.fit)
        # Kept even if it fails to start: its log is the evidence of an OOM at load.
        server = self.server = LlamaServer(self.plan.config, model_path, options)
        self._announce(f"vramcap: starting llama-server on {server.url} (log {server.log_path})")
        try:
            return server.start()
        finally:
            self._start_sampler(server)

    def _start_sampler(self, server: LlamaServer) -> None:
        if self.gpu is None or server.pid is None:
            return
        from .gpu import MemorySampler

        self.sampler = MemorySampler(self.gpu.uuid, pid=server.pid).start()

    def _uncaptured(self) -> Any:
        """Let progress output through pytest's capture (as pdb does)."""
        import contextlib

        capture = self.config.pluginmanager.getplugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()

    def _announce(self, message: str) -> None:
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None and not _is_worker(self.config):
            with self._uncaptured():
                reporter.write_line(message)

    def stop_server(self) -> None:
        if isinstance(self.server, LlamaServer) and not _is_worker(self.config):
            self.server.stop()
        if self.sampler is not None:
            self.sampler.stop()
        if self.ballast is not None:
            self.ballast.release()

    @property
    def embedded(self) -> LlamaServer | None:
        return self.server if isinstance(self.server, LlamaServer) else None

    # -------------------------------------------------------------- verdicts

    def run_scenario(self, scenario: Scenario) -> ScenarioRun:
        server = self.ensure_server()
        model = self.settings.model if self.settings.engine == "ollama" else None
        return asyncio.run(run_both(server.url, scenario, model=model))

    def verdicts_for(self, run: ScenarioRun, min_speedup: float | None, slo: list[tuple[str, float]]) -> list[Verdict]:
        embedded = self.embedded
        log = embedded.log if embedded else None
        alive = embedded.running if embedded else None
        code = embedded.exit_code if embedded else None
        errors = run.sequential.errors + run.parallel.errors
        verdicts = [
            oom_verdict(self.plan, log, alive, code, errors),
            offload_verdict(log),
            speedup_verdict(run, min_speedup, self.slots),
        ]
        return verdicts + slo_verdicts(run, slo)

    def start_failure_verdicts(self) -> list[Verdict]:
        """When the server never came up: what its log and exit say (an OOM at load, usually)."""
        embedded = self.embedded
        log = embedded.log if embedded else None
        verdicts = [oom_verdict(self.plan, log, False if embedded else None, embedded.exit_code if embedded else None),
                    offload_verdict(log)]
        if not verdicts[0].failed:
            summary = getattr(self.server_error, "summary", str(self.server_error))
            verdicts[0] = Verdict("oom", FAIL, "the server did not start", (f"server: {summary}",))
        return verdicts

    def min_speedup_for(self, scenario: Scenario, marker_value: float | None = None) -> float | None:
        return self.settings.min_speedup or marker_value or scenario.expect.min_speedup

    def record_result(self, result: ScenarioResult) -> None:
        self.results.append(result)

    # ----------------------------------------------------------------- hooks

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        plan, settings = self.plan, self.settings
        c = plan.config
        gpu = ", ".join(f"{g.name} ({g.total_mib} MiB, driver {g.driver})" for g in self.gpus) or \
            f"none ({self.gpu_reason})"
        if self.ballast is not None:
            gpu += (f"; emulating {plan.profile.name}: {self.ballast.held_mib} MiB held, "
                    f"{plan.profile.usable_mib} MiB left free")
        engine = settings.engine if settings.engine in ("url", "ollama") else "llamacpp (embedded llama-server)"
        return [
            f"vramcap: profile {plan.profile.name} ({plan.profile.usable_mib} MiB usable); "
            f"plan {plan.spec.name} {c.parallel} agent{'s' if c.parallel > 1 else ''} x {c.ctx_per_agent} ctx, "
            f"KV {c.cache_type_k}, "
            f"flash-attn {'on' if c.flash_attn else 'off'}: {plan.total_mib:.0f} MiB at peak, "
            f"{'fits' if plan.fits else 'DOES NOT FIT'}",
            f"vramcap: engine {engine}{' at ' + settings.server_url if settings.server_url else ''}; GPU {gpu}",
        ]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # The xdist controller starts the server before DSession spawns workers
        # (its sessionstart is trylast), so every worker can attach to it.
        if _is_xdist_controller(self.config):
            try:
                self.ensure_server()
            except EngineError:
                pass  # reported by every test that needs it, and in the summary

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.server is not None:
            node.workerinput[WORKER_URL_KEY] = self.server.url

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or _is_worker(self.config):
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                self.record_result(ScenarioResult.model_validate(json.loads(value)))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        result = yield
        if _is_worker(self.config):
            return result
        # pytest-cov's pattern: by pytest_sessionfinish it is too late to set testsfailed.
        embedded = self.embedded
        if embedded is not None:
            verdict = oom_verdict(None, embedded.log, embedded.running, embedded.exit_code)
            if verdict.failed:
                self.session_verdicts.append(verdict)
        if self.server_error is not None:
            summary = getattr(self.server_error, "summary", str(self.server_error))
            self.session_verdicts.append(Verdict("engine", FAIL, summary))
        if any(v.failed for v in self.session_verdicts):
            session.testsfailed += 1
        return result

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if _is_worker(self.config):
            return
        self.stop_server()
        embedded = self.embedded
        engine: dict[str, Any] = {"kind": self.settings.engine, "url": self.server.url if self.server else None}
        if embedded is not None:
            engine.update({"binary": str(embedded.binary), "argv": embedded.argv[1:], "log": str(embedded.log_path),
                           "exit_code": embedded.exit_code})
            final = embedded.log.final_breakdown
            if final is not None:
                engine["memory_breakdown_mib"] = final.__dict__
        report = RunReport(
            profile=self.plan.profile.to_dict(),
            plan=self.plan.to_dict(),
            engine=engine,
            gpu={
                "gpus": [g.to_dict() for g in self.gpus],
                "reason": self.gpu_reason,
                "device": self.gpu.to_dict() if self.gpu else None,
                "emulated_profile": None if self.ballast is None else {
                    "profile": self.plan.profile.name, "free_target_mib": self.plan.profile.usable_mib,
                    "ballast_mib": self.ballast.held_mib, "free_before_mib": self.ballast.free_before_mib},
                "measured": self.sampler.to_dict() if self.sampler is not None else None,
            },
            versions=versions(),
            scenarios=self.results,
            session_verdicts=[v.to_dict() for v in self.session_verdicts],
            passed=session.testsfailed == 0,
        )
        self.report_path = write_report(report, self.settings.report_dir)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if _is_worker(self.config):
            return
        write = terminalreporter.write_line
        terminalreporter.section("vramcap")
        if self.results:
            write(summary_table(self.results))
        for verdict in self.session_verdicts:
            write(verdict.describe(), red=True)
        if self.report_path is not None:
            write(f"vramcap report: {self.report_path}")
