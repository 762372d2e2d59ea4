"""The reporter: a plugin object on the controller only (never on xdist workers), as junitxml's LogXML.

It names the plan in the header, collects every scenario result (from this
process or, through ``user_properties``, from workers), fails the run on
session-level verdicts the pytest-cov way (counting a failure in a
``pytest_runtestloop`` wrapper, so teardown still runs), stops the server,
writes the JSON report and prints the verdict table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..net import redact
from ..report.files import write_report
from ..report.schema import RunReport, ScenarioResult, versions
from ..report.terminal import summary_table
from ..report.verdicts import Verdict, session_verdicts
from .runstate import RunState
from .stash import RESULT_PROPERTY

__all__ = ["Reporter"]


class Reporter:
    def __init__(self, state: RunState) -> None:
        self.state = state
        self.results: list[ScenarioResult] = []
        self.session_verdicts: list[Verdict] = []
        self.report_path: Path | None = None
        self.report_error: str | None = None
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
        return [
            f"vramcap: profile {plan.profile.name} ({plan.profile.usable_mib} MiB usable); "
            f"plan {plan.spec.name} {c.parallel} agent{'s' if c.parallel > 1 else ''} x {c.ctx_per_agent} ctx, "
            f"KV {c.cache_type_k}, "
            f"flash-attn {'on' if c.flash_attn else 'off'}: {plan.total_mib:.0f} MiB at peak, "
            f"{'fits' if plan.fits else 'DOES NOT FIT'}",
            f"vramcap: engine {engine}{' at ' + redact(settings.server_url) if settings.server_url else ''}; "
            f"GPU {gpu}",
        ]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ran = True
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                self.results.append(ScenarioResult.model_validate_json(str(value)))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        result = yield
        # By pytest_sessionfinish it is too late to count a failure.
        server = self.state.server
        self.session_verdicts = session_verdicts(server.evidence() if server else None, self.state.server_error)
        if any(v.failed for v in self.session_verdicts):
            session.testsfailed += 1
        return result

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state = self.state
        state.stop()  # before the report: llama-server prints its memory breakdown on the way out
        if not (self.ran or state.server is not None):
            return
        report = RunReport(
            profile=state.plan.profile.to_dict(),
            plan=state.plan.to_dict(),
            engine=state.engine_report(),
            gpu=state.gpu_report(),
            versions=versions(),
            scenarios=self.results,
            session_verdicts=self.session_verdicts,
            passed=session.testsfailed == 0,
        )
        try:
            self.report_path = write_report(report, state.settings.report_dir)
        except OSError as exc:
            self.report_error = (f"vramcap: cannot write the report to {state.settings.report_dir}: "
                                 f"{exc.strerror or exc}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("vramcap")
        if self.results:
            write(summary_table(self.results))
        for verdict in self.session_verdicts:
            write(verdict.describe(), red=True)
        if self.report_path is not None:
            write(f"vramcap report: {self.report_path}")
        if self.report_error is not None:
            write(self.report_error, red=True)
