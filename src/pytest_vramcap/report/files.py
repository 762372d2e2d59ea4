"""Writing run reports to disk (JSON today; Markdown and HTML land here too)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .schema import RunReport

__all__ = ["write_report"]


def write_report(report: RunReport, report_dir: Path) -> Path:
    """``report_dir/vramcap-<UTC stamp>.json``, never overwriting an earlier run's file."""
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = report_dir / f"vramcap-{stamp}.json"
    counter = 1
    while path.exists():
        counter += 1
        path = report_dir / f"vramcap-{stamp}-{counter}.json"
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return path
