"""Benchmark: planning from a 9 GB GGUF reads only its header.

Writes a sparse Qwen2.5-14B Q4_K_M GGUF (real size, real tokenizer length), then
times (a) reading the header into a ModelSpec and planning in-process, and (b) the
whole `vramcap plan --model FILE --json` command in a fresh interpreter. Prints a
Markdown table; the numbers in docs/benchmarks.md come from it.

    .venv/bin/python benchmarks/bench_plan_from_gguf.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from pytest_vramcap.model import spec_from_gguf
from pytest_vramcap.model.synth import write_sparse_gguf
from pytest_vramcap.planner import PlanRequest, make_plan
from pytest_vramcap.planner.profiles import resolve_profile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sparse_gguf("qwen2.5-14b", "Q4_K_M", Path(tmp) / "qwen2.5-14b-Q4_K_M.gguf")
        size = path.stat().st_size
        header_times, plan_times, cli_times = [], [], []
        profile = resolve_profile("rtx4080", {})
        for _ in range(args.repeat):
            start = time.perf_counter()
            spec = spec_from_gguf(path)
            header_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            make_plan(spec, profile, PlanRequest(agents=4, ctx_per_agent=8192))
            plan_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pytest_vramcap.cli", "plan", "--model", str(path), "--profile",
                            "rtx4080", "--agents", "4", "--ctx-per-agent", "8192", "--json"],
                           check=True, capture_output=True)
            cli_times.append(time.perf_counter() - start)
        # For comparison: gguf's stock reader itemises every tokenizer string.
        import gguf

        start = time.perf_counter()
        gguf.GGUFReader(path)
        stock_times = [time.perf_counter() - start]
    print(f"date: {date.today()}  machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}  file: {size:,} bytes")
    print("| step | median s | min s | max s |\n|---|---|---|---|")
    for name, times in (("read GGUF header -> ModelSpec", header_times), ("make_plan (check)", plan_times),
                        ("`vramcap plan --json` end to end", cli_times),
                        ("(comparison) stock gguf.GGUFReader, 1 run", stock_times)):
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()
