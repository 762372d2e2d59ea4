"""Benchmark: how much batching 4 decode streams buys on this CPU, per model and mix.

Runs llama.cpp's own llama-batched-bench (from the engine extra) on synthetic models:
64 prompt tokens, 128 generated, 1 and 4 parallel sequences. The ratio of S_TG
(generation tokens/s) at 4 over 1 is the ceiling for a 4-agent parallel speedup.
This is why the main job defaults to small:F16.

    .venv/bin/python benchmarks/bench_cpu_batching.py
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
from datetime import date
from pathlib import Path

from pytest_vramcap.engines import find_llama_server
from pytest_vramcap.model.synth import write_gguf


def main() -> None:
    bench = find_llama_server().with_name("llama-batched-bench")
    print(f"date: {date.today()}  machine: {platform.machine()}, {__import__('os').cpu_count()} cores")
    print("| model | file MB | S_TG 1 seq (tok/s) | S_TG 4 seq (tok/s) | 4-seq / 1-seq |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for shape, mix in (("tiny", "F16"), ("tiny", "Q8_0"), ("small", "F16"), ("small", "Q8_0"), ("small", "Q4_0")):
            path = write_gguf(shape, mix, Path(tmp) / f"{shape}-{mix}.gguf", weights="zeros")
            out = subprocess.run([str(bench), "-m", str(path), "-c", "4096", "-b", "512", "-ub", "512", "-npp", "64",
                                  "-ntg", "128", "-npl", "1,4", "--no-repack"], capture_output=True, text=True,
                                 check=True).stdout
            rows = [line for line in out.splitlines() if line.startswith("|") and line.split("|")[1].strip().isdigit()]
            one, four = (float(row.split("|")[8]) for row in rows)
            print(f"| {shape}:{mix} | {path.stat().st_size / 1e6:.0f} | {one:.0f} | {four:.0f} | {four / one:.2f}x |")


if __name__ == "__main__":
    main()
