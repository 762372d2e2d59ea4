"""How often the regression gate fails a run that changed nothing: the false-alarm rate.

Saves a baseline with the Quick start's run (the shipped scenarios on the embedded default
server) ``--saves`` times (each save adds the run: the baseline's spread then includes how much
identical runs differ), then runs the same command N more times against it with ``--vramcap-compare``
and the default thresholds. Each run starts its own server, as a CI job would. Prints, per run, the exit code,
whether the gate regressed and how close each gated metric came to its allowance (worse_by /
allowed; 1.0 would fail), then the false-alarm count.

    python benchmarks/bench_gate_false_alarms.py --saves 3 --runs 10 [--compare-fail speedup:10%,...]
    python benchmarks/bench_gate_false_alarms.py --baseline saved.json --runs 10   # reuse a saved baseline
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(work: Path, *extra: str) -> tuple[int, dict | None, float]:
    reports = work / "reports"
    before = set(reports.glob("vramcap-*.json")) if reports.exists() else set()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--vram-profile=16gb",
                           "scenarios/", f"--vramcap-report-dir={reports}", f"--vramcap-baseline-dir={work}", *extra],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    new = sorted(set(reports.glob("vramcap-*.json")) - before)
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.returncode, json.loads(new[-1].read_text()) if new else None, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--saves", type=int, default=3, help="runs saved into the baseline first")
    parser.add_argument("--baseline", type=Path, default=None, help="start from this saved baseline instead")
    parser.add_argument("--compare-fail", default=None, help="thresholds (default: the plugin's)")
    args = parser.parse_args()
    extra = [f"--vramcap-compare-fail={args.compare_fail}"] if args.compare_fail else []
    with tempfile.TemporaryDirectory(prefix="vramcap-fa-") as tmp:
        work = Path(tmp)
        if args.baseline is not None:
            shutil.copy(args.baseline, work / "ref.json")
            print(f"baseline: {args.baseline} ({json.loads(args.baseline.read_text())['runs']} runs)", flush=True)
        for save in range(1, 0 if args.baseline is not None else args.saves + 1):
            rc, _report, wall = _pytest(work, "--vramcap-save-baseline=ref")
            print(f"baseline run {save}: exit {rc}, {wall:.0f} s", flush=True)
            if rc != 0:
                return 2
        alarms = 0
        for run in range(1, args.runs + 1):
            rc, report, wall = _pytest(work, "--vramcap-compare=ref", *extra)
            comparison = (report or {}).get("comparison") or {}
            gated = [row for row in comparison.get("rows", []) if row["allowance"] is not None]
            closest = max(gated, key=_ratio, default=None)
            worst = _ratio(closest) if closest else 0.0
            regressed = bool(comparison.get("regressed"))
            alarms += regressed or rc != 0
            print(f"run {run:2d}: exit {rc}, gate {'REGRESSED' if regressed else 'ok'}, {wall:.0f} s, closest "
                  f"{closest['scenario'] + ' ' + closest['metric'] if closest else '-'} at {worst:.2f} of its "
                  f"allowance; speedups " + ", ".join(
                      f"{r['scenario']} {r['now']['median']:.2f}x" for r in gated if r["metric"] == "speedup"),
                  flush=True)
        print(f"false alarms: {alarms} of {args.runs}")
        return 1 if alarms else 0


def _ratio(row: dict) -> float:
    sign = -1 if row["metric"] in ("speedup", "output_tps") else 1
    return sign * row["delta"] / row["allowance"] if row["allowance"] else 0.0


if __name__ == "__main__":
    sys.exit(main())
