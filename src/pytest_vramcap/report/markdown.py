"""The Markdown summary for CI: the verdict table, what failed and why, the baseline comparison.

GitHub renders it on the job's page when it is appended to ``$GITHUB_STEP_SUMMARY``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .schema import RunReport
from .terminal import summary_table

__all__ = ["append_step_summary", "render_markdown"]


def _cell(text: str) -> str:
    """Text safe inside a table cell: a ``|`` would start a new cell."""
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    """Text as inline code (a backtick inside would end it early)."""
    quoted = text.replace("`", "'")
    return f"`{quoted}`"


def _comparison(report: RunReport) -> list[str]:
    comparison = report.comparison
    if comparison is None:
        return []
    lines = ["", f"### Compared with baseline `{comparison['baseline']}`: "
             f"{'**REGRESSED**' if comparison['regressed'] else 'no regression'}", "",
             "| scenario | metric | baseline | now | delta | allowed | result |", "|---|---|---:|---:|---:|---:|---|"]
    for row in comparison["rows"]:
        if row["allowance"] is None:
            continue  # the HTML report has every metric; CI's summary shows the gated ones
        delta = f"{row['delta_pct']:+.1f}%" if row["delta_pct"] is not None else f"{row['delta']:+.4g}"
        lines.append(f"| {_cell(row['scenario'])} | {row['metric']} | {row['baseline']['median']:.4g} | "
                     f"{row['now']['median']:.4g} | {delta} | {row['allowance']:.4g} | "
                     f"{'**REGRESSED**' if row['regressed'] else 'ok'} |")
    lines += [""] + [f"- **REGRESSED**: {flip}" for flip in comparison["flips"]]
    lines += [f"- warning: {warning}" for warning in comparison["warnings"]]
    lines += [f"- changed: {change}" for change in comparison["changes"]]
    lines += [f"- note: {note}" for note in comparison.get("notes", [])]
    return lines


def _loads(report: RunReport) -> list[str]:
    if not report.loads:
        return []
    lines = ["", "### Load tests (Locust)", "",
             "| test | users | graphs | failure ratio | tokens/s | TTFT p95 s | result |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for load in report.loads:
        summary = load.get("summary") or {}
        tps, ttft = summary.get("output_tps"), (summary.get("ttft_s") or {}).get("p95")
        lines.append(f"| {_cell(str(load.get('nodeid')))} | {load.get('users')} | {load.get('graphs')} | "
                     f"{load.get('failure_ratio', 0):.3f} | {'-' if tps is None else f'{tps:.1f}'} | "
                     f"{'-' if ttft is None else f'{ttft:.3f}'} | {'PASSED' if load.get('passed') else '**FAILED**'} |")
    return lines


def render_markdown(report: RunReport) -> str:
    plan = report.plan
    if plan is not None:
        config = plan["config"]
        setup = (f"{plan['model']['name']}, {config['parallel']} agents x {config['ctx_per_agent']} ctx, "
                 f"KV {config['kv_cache']}")
    else:
        setup = "no plan"
    lines = [f"## vramcap: {'PASSED' if report.passed else 'FAILED'}", "",
             f"Profile **{report.profile.get('name')}**, {setup}, engine {report.engine.get('kind')}.", ""]
    if report.scenarios:
        lines.append(summary_table(report.scenarios, tablefmt="github"))
    failed = [(result.name, verdict) for result in report.scenarios for verdict in result.verdicts if verdict.failed]
    failed += [("the run", verdict) for verdict in report.session_verdicts if verdict.failed]
    if failed:
        lines += ["", "### Failed verdicts", ""]
        for where, verdict in failed:
            lines.append(f"- **{_cell(where)}**: {verdict.name}: {_cell(verdict.summary)}")
            lines += [f"  - {_code(line)}" for line in verdict.evidence]
    lines += _cards(report)
    lines += _loads(report)
    lines += _comparison(report)
    return "\n".join(lines) + "\n"


def _cards(report: RunReport) -> list[str]:
    """Several cards: each one's plan beside NVML's peaks on it (process, and device less its ballast)."""
    cards = ((report.gpu or {}).get("measured") or {}).get("cards")
    if not cards:
        return []

    def mib(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    lines = ["", "### GPU memory by card (MiB)", "",
             "| card | planned | NVML process peak | device peak less ballast |", "|---|---:|---:|---:|"]
    for card in cards:
        device = None if card.get("peak_device_mib") is None else card["peak_device_mib"] - card.get("ballast_mib", 0)
        lines.append(f"| {card.get('index')}: {_cell(str(card.get('name', card['uuid'])))} | "
                     f"{mib(card.get('planned_mib'))} | {mib(card.get('peak_process_mib'))} | {mib(device)} |")
    return lines


def append_step_summary(markdown: str) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when GitHub Actions set it; the file it wrote, else None."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as summary:
        summary.write(markdown + "\n")
    return path
