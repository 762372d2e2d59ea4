"""The reporter: a plugin object on the controller only (never on xdist workers), as junitxml's LogXML.

It names the plan in the header, collects every scenario result (from this
process or, through ``user_properties``, from workers), fails the run on
session-level verdicts and on a regression against the baseline the pytest-cov
way (counting a failure in a ``pytest_runtestloop`` wrapper, so teardown still
runs), stops the server, writes the JSON, HTML and Markdown reports (and the
baseline) and prints the verdict table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..net import redact
from ..planner.output import plan_json, plan_set_json
from ..report.files import write_report
from ..report.markdown import append_step_summary, render_markdown
from ..report.schema import RunReport, ScenarioResult, machine, versions
from ..report.terminal import summary_table, turns_table
from ..report.verdicts import Verdict, session_verdicts
from .gate import RegressionGate
from .runstate import RunState
from .signals import ignore_sigterm
from .stash import LOAD_PROPERTY, REPORT_ONLY_PROPERTIES, RESULT_PROPERTY

__all__ = ["REPORTER_KEY", "Reporter"]


REPORTER_KEY: pytest.StashKey[Reporter] = pytest.StashKey()
"""config.stash slot of the reporter (on the controller only, never on xdist workers)."""


class Reporter:
    def __init__(self, config: pytest.Config, state: RunState, gate: RegressionGate) -> None:
        self.config = config
        self.state = state
        self.gate = gate
        self.machine = machine()
        config.hook.pytest_vramcap_machine_info(config=config, machine_info=self.machine)
        self.results: list[ScenarioResult] = []
        self.loads: list[dict[str, Any]] = []
        self.session_verdicts: list[Verdict] = []
        self.report_path: Path | None = None
        self.report_error: str | None = None
        self.step_summary: Path | None = None
        self.ran = False
        """Whether any test ran: --collect-only and runs stopped at collection write no report."""

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        state = self.state
        plan, settings, c = state.plan, state.settings, state.plan.config
        gpu = ", ".join(f"{g.name} ({g.total_mib} MiB, driver {g.driver})" for g in state.gpus) or \
            f"none ({state.gpu_reason})"
        if state.ballast is not None:
            gpu += (f"; emulating {plan.profile.name}: {state.ballast.held_mib} MiB held, "
                    f"{plan.profile.usable_mib} MiB left free")
        engine = settings.engine if settings.engine != "llamacpp" else "llamacpp (embedded llama-server)"
        plans = state.plans
        models = "; ".join(f"{role} {p.spec.name} {p.config.parallel} x {p.config.ctx_per_agent}"
                           for role, p in plans.plans.items())
        planned = (f"plan {plan.spec.name} {c.parallel} agent{'s' if c.parallel > 1 else ''} x {c.ctx_per_agent} ctx"
                   if not plans.several else f"plan {len(plans.plans)} models, one server each ({models})")
        return [
            f"vramcap: profile {plan.profile.name} ({plan.profile.usable_mib} MiB usable); "
            f"{planned}, KV {c.cache_type_k}, "
            f"flash-attn {'on' if c.flash_attn else 'off'}: {plans.total_mib:.0f} MiB at peak, "
            f"{'fits' if plans.fits else 'DOES NOT FIT'}",
            f"vramcap: engine {engine}{' at ' + redact(settings.server_url) if settings.server_url else ''}; "
            f"GPU {gpu}",
        ]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ran = True
        if report.when == "call":
            for name, value in report.user_properties:
                if name == RESULT_PROPERTY:
                    self.results.append(ScenarioResult.model_validate_json(str(value)))
                elif name == LOAD_PROPERTY:
                    self.loads.append(json.loads(str(value)))
        # Before junitxml reads them: whole results are this report's, JUnit gets the key metrics alone.
        report.user_properties = [(name, value) for name, value in report.user_properties
                                  if name not in REPORT_ONLY_PROPERTIES]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        result = yield
        # By pytest_sessionfinish it is too late to count a failure.
        self.session_verdicts = session_verdicts({role: server.evidence() for role, server in
                                                  self.state.servers.items()}, self.state.server_error)
        if any(v.failed for v in self.session_verdicts):
            session.testsfailed += 1
        if self.ran and self.gate.baseline is not None:
            comparison = self.gate.judge(self._report(passed=session.testsfailed == 0))
            if comparison is not None and comparison.regressed:
                session.testsfailed += 1
        return result

    def _plan_json(self) -> dict[str, Any]:
        """The first model's plan (what the report's readers and baselines read); with several models, the set
        under ``model_set`` (each model by role, the total, the engines' configs)."""
        plan = plan_json(self.state.plan)
        if self.state.plans.several:
            plan["model_set"] = plan_set_json(self.state.plans)
        return plan

    def _report(self, passed: bool) -> RunReport:
        state = self.state
        results = [result.model_copy(update={"peak_vram_mib": state.peak_vram_between(*result.window)})
                   if result.window else result for result in self.results]
        return RunReport(
            profile=state.plan.profile.to_dict(),
            plan=self._plan_json(),
            engine=state.engine_report(),
            gpu=state.gpu_report(),
            versions=versions(),
            machine=self.machine,
            scenarios=results,
            loads=self.loads,
            session_verdicts=self.session_verdicts,
            passed=passed,
            comparison=self.gate.comparison.to_dict() if self.gate.comparison else None,
        )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        ignore_sigterm()  # a second signal (CI sends SIGTERM after SIGINT) must not cut the cleanup short
        state = self.state
        state.stop()  # before the report: llama-server prints its memory breakdown on the way out
        if not (self.ran or state.server is not None):
            return
        report = self._report(passed=session.testsfailed == 0)
        self.config.hook.pytest_vramcap_update_report(config=self.config, report=report)
        try:
            self.report_path = write_report(report, state.settings.report_dir)
        except OSError as exc:
            self.report_error = (f"vramcap: cannot write the report to {state.settings.report_dir}: "
                                 f"{exc.strerror or exc}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        try:
            self.step_summary = append_step_summary(render_markdown(report))
        except OSError as exc:  # CI's summary is a courtesy: say so, but the run's outcome stands
            self.report_error = f"vramcap: cannot append to $GITHUB_STEP_SUMMARY: {exc.strerror or exc}"
        self.gate.save(report, complete=exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("vramcap")
        if self.results:
            write(summary_table(self.results))
            if turns := turns_table(self.results):
                write("")
                write(turns)
        for verdict in self.session_verdicts:
            write(verdict.describe(), red=True)
        for line, bad in self.gate.summary_lines():
            write(line, red=bad)
        if self.report_path is not None:
            write(f"vramcap report: {self.report_path}")
            write(f"vramcap report: {self.report_path.with_suffix('.html')} (a browser), .md (Markdown) next to it")
        if self.step_summary is not None:
            write(f"vramcap summary appended to {self.step_summary}")
        if self.report_error is not None:
            write(self.report_error, red=True)
