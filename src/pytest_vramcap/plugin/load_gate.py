"""The Locust gate in pytest: ``vramcap_load.run(...)`` loads the session's server, ``.check(...)`` gates on SLOs.

    @pytest.mark.vramcap(load_slo={"failure_ratio": 0, "ttft_p95_s": 2.0, "output_tps": 100})
    def test_four_agents_hold_their_latency(vramcap_load):
        outcome = vramcap_load.run("scenarios/research-fanout.yaml", users=4, run_time_s=60)
        vramcap_load.check(outcome)

The load runs through Locust's library API (an Environment, a local runner, a user count, a
spawn rate and a duration: locust/run.py) in a child process, ``vramcap load
--server-url``, not in the pytest process: importing Locust runs gevent's ``patch_all``, which
would turn this process's threads, sockets and subprocesses into gevent's (the asyncio client,
the NVML sampler and xdist's channels run on them). The child writes its result as JSON (the
contract of ``vramcap load --json``, report/load_output.py's ``LoadReport``, read back as that model)
and its output to ``vramcap-load.log``; a failed check shows
the load's numbers and every verdict's evidence, like the other verdicts. The child is a
ManagedProcess (engines/process.py): its own process group, stopped on timeout or Ctrl-C, and
killed at exit if anything is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines.process import ManagedProcess, tail
from ..errors import VramcapError
from .stash import LOAD_PROPERTY

if TYPE_CHECKING:
    import pytest

    from ..engines.base import Server
    from ..report.load_output import LoadReport
    from ..report.verdicts import Verdict

__all__ = ["LoadOutcome", "LoadRunner"]

_EXIT_SLO_MISSED = 1
_GRACE_S = 300.0
"""Beyond the run time: Locust's start, the last graph's requests, the reports."""


class LoadRunError(VramcapError):
    """The load run itself failed (not an SLO): bad input, the server unreachable, Locust crashed."""


@dataclass(frozen=True)
class LoadOutcome:
    report: LoadReport
    """``vramcap load --json``: summary (TTFT/TPOT/E2E, tokens/s), graphs, failures, verdicts."""
    files: dict[str, Path] = field(default_factory=dict)
    """Locust's own reports of this run (``html``, the ``csv`` prefix) and the child's ``log``."""

    @property
    def data(self) -> dict[str, Any]:
        """The report as the JSON of ``vramcap load --json`` (a dict, by its keys)."""
        return self.report.model_dump(mode="json")

    @property
    def verdicts(self) -> list[Verdict]:
        return self.report.verdicts

    @property
    def passed(self) -> bool:
        return self.report.passed

    def junit_properties(self) -> list[tuple[str, str]]:
        """The load's key numbers and each SLO's outcome, for JUnit XML ``<property>`` entries."""
        from ..report.schema import junit_properties

        summary = self.report.summary
        numbers = {"output_tps": summary.output_tps, "failure_ratio": self.report.failure_ratio,
                   "ttft_p95_s": summary.ttft_s.p95 if summary.ttft_s is not None else None}
        return junit_properties("vramcap_load_", numbers, self.verdicts)

    def describe(self) -> str:
        """The load's numbers, then every verdict with its evidence."""
        report, summary = self.report, self.report.summary
        tps = summary.output_tps
        lines = [f"{report.scenario}: {report.users} users for {report.duration_s:.1f} s, {report.graphs} graphs "
                 f"({report.failed_graphs} failed), {summary.requests} requests "
                 f"(failure ratio {report.failure_ratio:.3f}), "
                 f"{'-' if tps is None else f'{tps:.1f}'} output tokens/s"]
        return "\n".join([*lines, *(verdict.describe() for verdict in self.verdicts)])


class LoadRunner:
    """Runs Locust load against the session's server; ``slo`` defaults come from the ``vramcap`` marker."""

    def __init__(self, server: Server, out_dir: Path, slo: Mapping[str, float] | None = None,
                 item: pytest.Item | None = None) -> None:
        self._server = server
        self._out_dir = out_dir
        self._item = item
        """The test whose load runs join the run report and JUnit XML."""
        self.slo: dict[str, float] = dict(slo or {})
        self._runs = 0

    def run(self, scenario: str | Path | None = None, *, users: int = 4, run_time_s: float = 60,
            graphs: int | None = None, spawn_rate: float | None = None,
            slo: Mapping[str, float] | None = None) -> LoadOutcome:
        """Run ``users`` agent graphs of ``scenario`` (default: the Locust file's) for ``run_time_s`` seconds, or
        until ``graphs`` graphs have finished; ``slo`` adds to (and overrides) the marker's."""
        from ..report.load_output import LoadReport

        self._runs += 1
        out_dir = self._out_dir / f"load{self._runs}"  # each run of a test keeps its own files
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {"json": out_dir / "load.json", "html": out_dir / "locust.html", "csv": out_dir / "locust"}
        argv = [sys.executable, "-m", "pytest_vramcap.cli", "load", "--server-url", self._server.url,
                "--users", str(users), "--run-time", str(run_time_s), "--json", str(files["json"]),
                "--html", str(files["html"]), "--csv", str(files["csv"])]
        if self._server.request_model:
            argv += ["--request-model", self._server.request_model]
        if scenario is not None:
            argv += ["--scenario", str(scenario)]
        if graphs is not None:
            argv += ["--graphs", str(graphs)]
        if spawn_rate is not None:
            argv += ["--spawn-rate", str(spawn_rate)]
        for name, limit in {**self.slo, **(slo or {})}.items():
            argv += ["--slo", f"{name}={limit}"]
        child = ManagedProcess(argv, out_dir / "vramcap-load.log", name="vramcap load")
        child.start()
        try:
            code = child.process.wait(timeout=run_time_s + _GRACE_S) if child.process else None
        except subprocess.TimeoutExpired:
            raise LoadRunError(f"vramcap load did not finish within {run_time_s + _GRACE_S:.0f} s") from None
        finally:
            child.stop()  # nothing left if it ended; the whole group on timeout or Ctrl-C
        if code not in (0, _EXIT_SLO_MISSED) or not files["json"].is_file():
            lines = [line for line in tail(child.log_path).splitlines() if line.strip()]
            last = next((line for line in reversed(lines) if line.startswith("vramcap: error:")),
                        lines[-1] if lines else f"exit code {code}")
            raise LoadRunError(f"vramcap load failed ({child.log_path}): {last}")
        report = LoadReport.model_validate_json(files["json"].read_text(encoding="utf-8"))
        outcome = LoadOutcome(report=report, files={"html": files["html"], "csv": files["csv"],
                                                    "log": child.log_path})
        if self._item is not None:
            self._item.user_properties.append((LOAD_PROPERTY, json.dumps({"nodeid": self._item.nodeid,
                                                                          **outcome.data})))
            self._item.user_properties.extend(outcome.junit_properties())
        return outcome

    def check(self, outcome: LoadOutcome) -> None:
        """Fail the test with the load table and every verdict's evidence unless all pass."""
        __tracebackhide__ = True
        if not outcome.passed:
            raise AssertionError(outcome.describe())
