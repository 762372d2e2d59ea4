"""Writing a run's files: the JSON report with its HTML and Markdown next to it, and baselines."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from .schema import RunReport
from .snapshot import Snapshot

__all__ = ["write_baseline", "write_report"]


def _atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader (or a killed run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def write_report(report: RunReport, report_dir: Path) -> Path:
    """``report_dir/vramcap-<UTC stamp>.json``, never overwriting an earlier run's file; the HTML report and the
    Markdown summary go next to it with the same stem (``.html``, ``.md``)."""
    from .html import render_html
    from .markdown import render_markdown

    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = report_dir / f"vramcap-{stamp}.json"
    counter = 1
    while path.exists():
        counter += 1
        path = report_dir / f"vramcap-{stamp}-{counter}.json"
    _atomic_write(path, report.model_dump_json(indent=2))
    _atomic_write(path.with_suffix(".html"), render_html(report))
    _atomic_write(path.with_suffix(".md"), render_markdown(report))
    return path


def write_baseline(snapshot: Snapshot, path: Path) -> Path:
    """Store ``snapshot`` at ``path``, replacing an older baseline of the same name."""
    _atomic_write(path, snapshot.model_dump_json(indent=2))
    return path
