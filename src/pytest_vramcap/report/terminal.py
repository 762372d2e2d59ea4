"""The verdict table printed at the end of a pytest run."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from .schema import ScenarioResult

__all__ = ["summary_table", "turns_table"]

_HEADERS = ("scenario", "seq s", "par s", "speedup", "min", "oom", "offload", "resident", "options", "budget", "slots",
            "context", "cache", "speedup", "slo", "result")


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


def summary_table(results: Sequence[ScenarioResult], tablefmt: str = "simple") -> str:
    """One row per scenario: median wall times, median speedup and its minimum, each verdict, the result."""
    rows = []
    for result in results:
        slos = [v for v in result.verdicts if v.name.startswith("slo:")]
        rows.append((
            result.name,
            _seconds(result.sequential.wall_s if result.sequential else None),
            _seconds(result.parallel.wall_s if result.parallel else None),
            _ratio(result.speedup),
            _ratio(result.min_speedup),
            result.outcome("oom"),
            result.outcome("cpu_offload"),
            result.outcome("resident"),
            result.outcome("client_options"),
            result.outcome("output_budget"),
            result.outcome("slots"),
            result.outcome("context"),
            result.outcome("prompt_cache"),
            result.outcome("parallel_speedup"),
            "fail" if any(v.failed for v in slos) else ("pass" if slos else "-"),
            "PASSED" if result.passed else "FAILED",
        ))
    return tabulate(rows, headers=_HEADERS, tablefmt=tablefmt)


def turns_table(results: Sequence[ScenarioResult], tablefmt: str = "simple") -> str:
    """TTFT and prompt-cache reuse by agent and turn, for the scenarios whose agents spoke more than once ("" if
    none did): medians over the rounds, the parallel passes beside the sequential ones."""
    rows = []
    for result in results:
        if not any(row["turn"] > 1 for row in result.turns):
            continue
        for row in result.turns:
            cached = row["cached_tokens"]
            rows.append((result.name, row["mode"], row["label"], row["turn"], _seconds(row["ttft_s"]),
                         f"{row['prompt_tokens']:,.0f}" if row["prompt_tokens"] is not None else "-",
                         f"{cached:,.0f}" if cached is not None else "unknown"))
    if not rows:
        return ""
    return tabulate(rows, headers=("scenario", "mode", "agent", "turn", "ttft s", "prompt tokens", "cached"),
                    tablefmt=tablefmt)
