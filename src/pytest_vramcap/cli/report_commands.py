"""``vramcap compare`` (two runs, the regression gate's table) and ``vramcap plan --compare`` (two plans)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..defaults import DEFAULT_COMPARE_FAIL
from ..options import plan_change
from ..parsers import argparse_type, compare_fail
from .exits import EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_REGRESSED

__all__ = ["add_compare_options", "add_plan_compare_option", "run_compare", "run_plan_compare"]


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, help="the baseline: a .vramcap/baselines/NAME.json file or a run report")
    parser.add_argument("current", type=Path, help="the run to judge: a run report (reports/vramcap-*.json) or a "
                                                   "baseline file")
    parser.add_argument("--fail", type=argparse_type(compare_fail), default=compare_fail(DEFAULT_COMPARE_FAIL),
                        metavar="EXPR", help=f"how much worse a metric may get: METRIC:PERCENT%% or METRIC:AMOUNT, "
                                             f"comma-separated (default {DEFAULT_COMPARE_FAIL})")
    parser.add_argument("--all", action="store_true", help="show every metric, not only the gated ones")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_compare(args: argparse.Namespace) -> int:
    """Exit 1 when a gated metric or a verdict regressed."""
    from ..report.compare import compare, format_comparison
    from ..report.snapshot import load_snapshot

    base, now = load_snapshot(args.baseline), load_snapshot(args.current)
    comparison = compare(base, now, args.fail, label=str(args.baseline))
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else format_comparison(comparison, args.all))
    return EXIT_REGRESSED if comparison.regressed else EXIT_OK


def add_plan_compare_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compare", action="append", type=argparse_type(plan_change), default=None,
                        metavar="OPTION=VALUE", help="plan again with this change and show both side by side "
                        "(repeatable: --compare ctx-per-agent=16384 --compare kv-cache=q8_0); exit 1 when the "
                        "changed plan does not fit")


def run_plan_compare(args: argparse.Namespace) -> int:
    from ..planner.diff import format_plan_diff, plan_diff_json
    from ..planner.resolve import plan_from_options

    changes = dict(args.compare)
    values = vars(args)
    before = plan_from_options(values)
    # What the before-plan solved for stays as it is: the comparison shows the named change alone.
    solved = {"agents": before.config.parallel, "ctx_per_agent": before.config.ctx_per_agent}
    after = plan_from_options({**values, **solved, **changes})
    readable = {key.replace("_", "-"): value for key, value in changes.items()}
    if args.json:
        print(json.dumps(plan_diff_json(before, after, readable), indent=2))
    else:
        print(format_plan_diff(before, after, readable))
        if before.solved_for and before.solved_for not in changes:
            print(f"note: {before.solved_for.replace('_', '-')} was solved for the before-plan and kept for the "
                  f"after-plan")
    return EXIT_OK if after.fits else EXIT_DOES_NOT_FIT
