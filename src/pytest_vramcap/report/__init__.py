"""Stage 6, the report: what a run found, as verdicts with evidence and as files.

    verdicts.py  oom, cpu_offload, parallel_speedup and SLO verdicts, fed by engine evidence and runs
    schema.py    the run report (schema_version 1) and scenario results
    files.py     writing reports to disk
    terminal.py  the verdict table at the end of a pytest run
"""

from __future__ import annotations

from .files import write_report
from .schema import SCHEMA_VERSION, ModeReport, RunReport, ScenarioResult, versions
from .terminal import summary_table
from .verdicts import (
    FAIL,
    NA,
    PASS,
    Verdict,
    offload_verdict,
    oom_verdict,
    scenario_verdicts,
    session_verdicts,
    slo_verdicts,
    speedup_verdict,
    start_failure_verdicts,
)

__all__ = [
    "FAIL",
    "NA",
    "PASS",
    "SCHEMA_VERSION",
    "ModeReport",
    "RunReport",
    "ScenarioResult",
    "Verdict",
    "offload_verdict",
    "oom_verdict",
    "scenario_verdicts",
    "session_verdicts",
    "slo_verdicts",
    "speedup_verdict",
    "start_failure_verdicts",
    "summary_table",
    "versions",
    "write_report",
]
