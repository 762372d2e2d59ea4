"""The regression gate of a pytest run: ``--vramcap-compare`` and ``--vramcap-save-baseline`` (controller only).

The baseline is read when the run is configured, so a missing or corrupt one is a
usage error before any server starts. The reporter asks for the comparison once
the tests are done, and counts a regression as a failure the pytest-cov way.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..report.compare import Comparison, compare, format_comparison
from ..report.files import write_baseline
from ..report.schema import RunReport
from ..report.snapshot import Snapshot, add_run, load_snapshot, snapshot_of
from .settings import PREFIX, Settings

__all__ = ["RegressionGate"]


class RegressionGate:
    def __init__(self, settings: Settings) -> None:
        """Raises ConfigError (one line) when the baseline to compare with cannot be read."""
        self.settings = settings
        self.baseline: Snapshot | None = None
        self.comparison: Comparison | None = None
        self.saved: Path | None = None
        self.saved_runs = 0
        self.save_note: str | None = None
        self.save_error: str | None = None
        path = settings.compare
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"--{PREFIX}compare: no baseline at {path} (save one with "
                                  f"--{PREFIX}save-baseline={path.stem})")
            self.baseline = load_snapshot(path)

    def judge(self, report: RunReport) -> Comparison | None:
        """Compare the run so far with the baseline (None without one)."""
        if self.baseline is None or self.settings.compare is None:
            return None
        label = f"{self.settings.compare.stem} ({self.settings.compare})"
        self.comparison = compare(self.baseline, snapshot_of(report), self.settings.compare_fail, label=label)
        return self.comparison

    def save(self, report: RunReport, complete: bool) -> None:
        """Add this run to the baseline (``--vramcap-baseline-runs`` kept), or start one.

        Only a run that passed and ran to its end is saved: a baseline is what passing looks like, and
        a failed pass's short wall times or an interrupted run's missing scenarios would teach the gate
        the wrong numbers. A file that is not a baseline of this version is never overwritten.
        """
        path = self.settings.save_baseline
        if path is None:
            return
        if not (report.passed and complete):
            why = "the run failed" if complete else "the run did not finish"
            self.save_error = f"vramcap baseline NOT saved to {path}: {why} (a baseline is what passing looks like)"
            return
        older: Snapshot | None = None
        if path.exists():
            try:
                older = load_snapshot(path, baseline_only=True)
            except ConfigError as exc:
                self.save_error = f"vramcap baseline NOT saved: {exc} (move it away or name another baseline)"
                return
        snapshot, self.save_note = add_run(older, snapshot_of(report, name=path.stem), self.settings.baseline_runs)
        try:
            self.saved = write_baseline(snapshot, path)
        except OSError as exc:
            self.save_error = f"vramcap: cannot save the baseline to {path}: {exc.strerror or exc}"
            return
        self.saved_runs = snapshot.runs

    def summary_lines(self) -> list[tuple[str, bool]]:
        """What the terminal summary shows: (line, whether it is bad news)."""
        lines: list[tuple[str, bool]] = []
        if self.comparison is not None:
            lines += [(line, self.comparison.regressed and line.startswith(("vramcap gate", "REGRESSED")))
                      for line in format_comparison(self.comparison).splitlines()]
        if self.saved is not None:
            runs = f"{self.saved_runs} run{'s' if self.saved_runs > 1 else ''}"
            lines.append((f"vramcap baseline saved: {self.saved} ({runs})", False))
        if self.save_note is not None:
            lines.append((f"vramcap baseline: {self.save_note}", False))
        if self.save_error is not None:
            lines.append((self.save_error, True))
        return lines
