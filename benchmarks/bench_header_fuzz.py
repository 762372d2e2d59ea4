"""How damaged GGUF headers end, and how long it takes: the numbers behind docs/reliability.md.

Draws N mutations with the same strategy as tests/model/test_gguf_fuzz.py (counts, lengths,
types, byte flips, truncations of a real synthetic header), then plans each file. Prints how
many planned, how many ended in one ModelSourceError line (grouped by message), whether
anything else escaped, and the slowest case.

    .venv/bin/python benchmarks/bench_header_fuzz.py --cases 2000
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.model.test_gguf_fuzz import mutations

from pytest_vramcap.errors import ModelSourceError
from pytest_vramcap.model import spec_from_gguf
from pytest_vramcap.planner import PlanRequest, make_plan, resolve_profile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    args = parser.parse_args()
    outcomes: collections.Counter[str] = collections.Counter()
    seconds: list[float] = []
    slowest: list[tuple[float, str]] = []
    profile = resolve_profile("16gb", {})
    work = Path(tempfile.mkdtemp(prefix="vramcap-fuzz-"))

    @settings(max_examples=args.cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutations())
    def one(mutation: tuple[bytes, int]) -> None:
        data, size = mutation
        path = work / "m.gguf"
        path.write_bytes(data)
        os.truncate(path, size)
        start = time.perf_counter()
        try:
            spec = spec_from_gguf(path)
            make_plan(spec, profile, PlanRequest(agents=2, ctx_per_agent=1024))
            outcome = "planned"
        except ModelSourceError as exc:
            message = str(exc).split(": ", 1)[-1]
            outcome = "error: " + re.sub(r"[0-9][0-9,]*", "N", message)[:70]
        except Exception as exc:  # what the test forbids: counted, not raised
            outcome = f"ESCAPED {type(exc).__name__}: {str(exc)[:60]}"
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        outcomes[outcome] += 1
        slowest.append((elapsed, outcome))

    one()
    slowest.sort(reverse=True)
    print(f"# GGUF header fuzzing, {date.today()}, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"cases {len(seconds)}: median {statistics.median(seconds) * 1000:.1f} ms, "
          f"max {max(seconds) * 1000:.1f} ms ({slowest[0][1]})")
    escaped = sum(count for outcome, count in outcomes.items() if outcome.startswith("ESCAPED"))
    print(f"escaped (tracebacks): {escaped}")
    for outcome, count in outcomes.most_common(25):
        print(f"{count:6d}  {outcome}")


if __name__ == "__main__":
    main()
