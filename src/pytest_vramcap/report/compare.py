"""The regression gate: a run's snapshot against a baseline's, metric by metric, with the noise in mind.

A metric regresses when its median got worse than the baseline's by more than
its allowance, which is the larger of

* the threshold (``--vramcap-compare-fail``, ``speedup:10%``: percent of the baseline's median,
  or an amount in the metric's unit), and
* the noise: half the baseline's plus half this run's (:attr:`MetricStat.noise`: the drift
  between the baseline's runs, or the spread of a run's rounds), so values that already
  disagree by more than the threshold when nothing changed do not fail the gate.

A verdict that did not fail in the baseline and fails now always fails the gate, as
does a scenario that passed and fails now, and a run-wide failure (the server died)
the baseline did not have.
Differences of machine or profile are warned about; a changed model or config is
what a comparison is for, and is listed as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from ..defaults import DEFAULT_COMPARE_FAIL
from ..parsers import compare_fail
from .snapshot import COMPARABLE_MACHINE, METRICS, RUN_ROW, MetricStat, Snapshot

__all__ = ["Comparison", "MetricRow", "compare", "format_comparison"]

Threshold = tuple[str, float, bool]
"""(metric, amount, relative): what :func:`~pytest_vramcap.parsers.compare_fail` parses."""

_WARN_SETUP = ("profile", "emulated")
"""Setup keys whose difference makes timings incomparable (warned); the rest are the change under test."""


@dataclass(frozen=True)
class MetricRow:
    scenario: str
    metric: str
    base: MetricStat
    now: MetricStat
    allowance: float | None
    """How much worse the median may get, in the metric's unit; None when the metric is not gated."""

    @property
    def delta(self) -> float:
        return self.now.median - self.base.median

    @property
    def delta_pct(self) -> float | None:
        return 100 * self.delta / abs(self.base.median) if self.base.median else None

    @property
    def worse_by(self) -> float:
        """How much worse now is (negative: better), in the metric's unit."""
        return -self.delta if METRICS[self.metric].higher_is_better else self.delta

    @property
    def regressed(self) -> bool:
        return self.allowance is not None and self.worse_by > self.allowance

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "metric": self.metric, "unit": METRICS[self.metric].unit,
                "baseline": self.base.model_dump(), "now": self.now.model_dump(), "delta": self.delta,
                "delta_pct": self.delta_pct, "allowance": self.allowance, "regressed": self.regressed}


@dataclass(frozen=True)
class Comparison:
    baseline: str
    """What was compared against: the baseline's name or file."""
    rows: list[MetricRow]
    flips: list[str] = field(default_factory=list)
    """Verdicts that passed in the baseline and fail now."""
    warnings: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    """What differs in the setup (model, config, engine): the change under test, not a warning."""
    notes: list[str] = field(default_factory=list)
    thresholds: tuple[Threshold, ...] = ()

    @property
    def regressions(self) -> list[MetricRow]:
        return [row for row in self.rows if row.regressed]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions or self.flips)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "regressed": self.regressed, "rows": [r.to_dict() for r in self.rows],
                "flips": self.flips, "warnings": self.warnings, "changes": self.changes,
                "notes": self.notes,
                "thresholds": {name: f"{amount:g}{'%' if relative else ''}"
                               for name, amount, relative in self.thresholds}}


def _allowance(threshold: Threshold | None, base: MetricStat, now: MetricStat) -> float | None:
    if threshold is None:
        return None
    _name, amount, relative = threshold
    limit = amount / 100 * abs(base.median) if relative else amount
    return max(limit, (base.noise + now.noise) / 2)


def _rows(scenario: str, base: dict[str, MetricStat], now: dict[str, MetricStat],
          thresholds: dict[str, Threshold]) -> list[MetricRow]:
    return [MetricRow(scenario, name, base[name], now[name], _allowance(thresholds.get(name), base[name], now[name]))
            for name in METRICS if name in base and name in now]


def _flips(where: str, base: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Verdicts failing now that did not fail in the baseline (passed, n/a, or not judged then)."""
    return [f"{where}: {name} {'passed' if base.get(name) == 'pass' else 'did not fail'} in the baseline and fails "
            f"now" for name, outcome in now.items() if outcome == "fail" and base.get(name) != "fail"]


def _differences(base: dict[str, Any], now: dict[str, Any], keys: Iterable[str], prefix: str = "") -> list[str]:
    """``key old -> new`` for each differing key; nested dicts by their differing keys (``config.parallel 4 -> 2``)."""
    found = []
    for key in keys:
        old, new = base.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, sorted(set(old) | set(new)), f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key} {old!r} -> {new!r}")
    return found


def compare(base: Snapshot, now: Snapshot, thresholds: Iterable[Threshold] | None = None,
            label: str | None = None) -> Comparison:
    """``now`` against ``base``; thresholds default to :data:`~pytest_vramcap.defaults.DEFAULT_COMPARE_FAIL`."""
    chosen = tuple(thresholds) if thresholds is not None else compare_fail(DEFAULT_COMPARE_FAIL)
    by_metric = {threshold[0]: threshold for threshold in chosen}
    rows: list[MetricRow] = []
    flips: list[str] = []
    notes: list[str] = []
    for scenario in base.scenarios:
        current = now.scenario(scenario.name)
        if current is None:
            notes.append(f"{scenario.name}: in the baseline, not run now")
            continue
        rows += _rows(scenario.name, scenario.metrics, current.metrics, by_metric)
        flips += _flips(scenario.name, scenario.verdicts, current.verdicts)
        if scenario.passed and not current.passed and not any(flip.startswith(f"{scenario.name}:") for flip in flips):
            flips.append(f"{scenario.name}: passed in the baseline and fails now")
    notes += [f"{s.name}: new, not in the baseline" for s in now.scenarios if base.scenario(s.name) is None]
    if base.runs == 1:
        notes.append("the baseline holds one run: only its rounds show the noise; saving it again adds runs "
                     "(--vramcap-baseline-runs)")
    rows += _rows(RUN_ROW, base.run, now.run, by_metric)
    flips += _flips("the run", base.session_verdicts, now.session_verdicts)
    setup_keys = sorted(set(base.setup) | set(now.setup))
    warnings = [f"different {difference}" for difference in (
        _differences(base.machine, now.machine, COMPARABLE_MACHINE) if base.machine and now.machine else [])
        + _differences(base.setup, now.setup, [k for k in setup_keys if k in _WARN_SETUP])]
    if not (base.machine and now.machine):
        warnings.append("the baseline or this run does not record its machine: cannot tell whether they match")
    changes = _differences(base.setup, now.setup, [k for k in setup_keys if k not in _WARN_SETUP])
    return Comparison(label or base.name or "baseline", rows, flips, warnings, changes, notes, chosen)


def _value(stat: MetricStat, unit: str) -> str:
    text = f"{stat.median:.4g}{unit if unit == 'x' else ''}"
    return f"{text} (±{stat.noise / 2:.2g})" if len(stat.values) > 1 else text


def format_comparison(comparison: Comparison, all_metrics: bool = False) -> str:
    """The table (baseline, now, delta, allowance per gated metric; every metric with ``all_metrics``), then the
    flips, warnings, changes and notes, one line each."""
    shown = [row for row in comparison.rows if all_metrics or row.allowance is not None]
    table = tabulate(
        [(row.scenario, row.metric, _value(row.base, METRICS[row.metric].unit),
          _value(row.now, METRICS[row.metric].unit), f"{row.delta:+.4g}",
          f"{row.delta_pct:+.1f}%" if row.delta_pct is not None else "-",
          f"{row.allowance:.4g}" if row.allowance is not None else "-",
          "REGRESSED" if row.regressed else ("ok" if row.allowance is not None else "-"))
         for row in shown],
        headers=("scenario", "metric", "baseline", "now", "delta", "delta %", "allowed", "result"))
    lines = [f"vramcap: compared with baseline {comparison.baseline} (medians; ± half the noise: the drift between "
             f"runs or the spread of a run's rounds)",
             table if shown else "(no metric measured in both)"]
    lines += [f"REGRESSED: {flip}" for flip in comparison.flips]
    lines += [f"WARNING: {warning}" for warning in comparison.warnings]
    lines += [f"changed: {change}" for change in comparison.changes]
    lines += [f"note: {item}" for item in comparison.notes]
    verdict = (f"{len(comparison.regressions)} metric(s) and {len(comparison.flips)} verdict(s) regressed"
               if comparison.regressed else "no regression")
    lines.append(f"vramcap gate: {verdict}")
    return "\n".join(lines)
