"""Hours of load: `vramcap load` for a long run against the embedded llama-server, sampled every 10 s (issue 28).

What grows over an hour is what a capacity harness must not have: the harness process (Locust's runner and
users, vramcap's tally, the recording proxy with ``--scenario`` naming a graph) is sampled for its resident
memory, threads and open file descriptors, the server for its resident memory (and, on a GPU, NVML's), the
run for its requests and failures (Locust's ``_stats_history.csv``) and its tokens (llama-server's /metrics).

    python benchmarks/soak.py --duration 3600 --out docs/soak.json            # the default CPU model
    python benchmarks/soak.py --duration 3600 --scenario scenarios/research-graph.yaml --out docs/soak-graph.json

The summary keys: ``duration_s``, ``requests``, ``failed_requests``, ``rss_growth_pct`` (the harness's resident
memory at the end over its value 5 minutes in: start-up and the first allocations are not growth),
``threads_growth`` and ``fds_growth`` (end minus 5 minutes in), ``tokens_per_s_first_10min`` and
``tokens_per_s_last_10min``; ``samples`` holds every 10-second row. ``benchmarks/soak_plot.py`` draws them.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.model import spec_from_shape
from pytest_vramcap.model.materialize import materialize_model
from pytest_vramcap.planner.plan import PlanRequest
from pytest_vramcap.planner.profiles import resolve_profile
from pytest_vramcap.planner.solver import make_plan

MIB = 1024 * 1024
SETTLE_S = 300.0
"""Growth is measured from 5 minutes in: start-up, warm pools and the first histogram buckets are not leaks."""


def process_sample(pid: int) -> dict[str, float]:
    """Resident memory (MiB), threads and open file descriptors of ``pid`` from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def server_tokens(url: str) -> float | None:
    """llama-server's ``llamacpp:tokens_predicted_total`` (it runs with --metrics)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total"):
            return float(line.split()[-1])
    return None


def locust_counts(prefix: str) -> tuple[int, int] | None:
    """(requests, failures) so far: the last Aggregated row of Locust's stats history."""
    path = Path(f"{prefix}_stats_history.csv")
    if not path.is_file():
        return None
    rows = [row for row in csv.DictReader(path.read_text().splitlines()) if row.get("Name") == "Aggregated"]
    if not rows:
        return None
    return int(rows[-1]["Total Request Count"]), int(rows[-1]["Total Failure Count"])


def tokens_per_s(samples: list[dict[str, Any]], start_s: float, end_s: float) -> float | None:
    inside = [s for s in samples if start_s <= s["t_s"] <= end_s and s["server_tokens"] is not None]
    if len(inside) < 2 or inside[-1]["t_s"] == inside[0]["t_s"]:
        return None
    return (inside[-1]["server_tokens"] - inside[0]["server_tokens"]) / (inside[-1]["t_s"] - inside[0]["t_s"])


def summarize(samples: list[dict[str, Any]], duration_s: float, load_exit: int, load: dict[str, Any]) -> dict[str, Any]:
    """The run's figures; requests and failures are vramcap's own count of chat requests (``vramcap load --json``),
    not Locust's table, whose rows add whole graphs to the requests."""
    settled = next((s for s in samples if s["t_s"] >= SETTLE_S), samples[0])
    last = samples[-1]
    summary = load.get("summary") or {}
    return {
        "duration_s": round(duration_s, 1),
        "load_exit_code": load_exit,
        "requests": summary.get("requests"),
        "failed_requests": summary.get("errors"),
        "failures": summary.get("failures"),
        "graphs": load.get("graphs"),
        "failed_graphs": load.get("failed_graphs"),
        "rss_settled_mib": round(settled["harness"]["rss_mib"], 1),
        "rss_end_mib": round(last["harness"]["rss_mib"], 1),
        "rss_growth_pct": round(100 * (last["harness"]["rss_mib"] / settled["harness"]["rss_mib"] - 1), 2),
        "threads_growth": last["harness"]["threads"] - settled["harness"]["threads"],
        "fds_growth": last["harness"]["fds"] - settled["harness"]["fds"],
        "server_rss_growth_pct": round(100 * (last["server"]["rss_mib"] / settled["server"]["rss_mib"] - 1), 2),
        "tokens_per_s_first_10min": tokens_per_s(samples, 0, 600),
        "tokens_per_s_last_10min": tokens_per_s(samples, duration_s - 600, duration_s),
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--model", default="small:F16", help="a shape or GGUF the embedded server runs")
    parser.add_argument("--agents", type=int, default=4, help="the server's slots; the load runs one user each")
    parser.add_argument("--ctx", type=int, default=2048, help="context per slot")
    parser.add_argument("--scenario", default=None, help="the load's scenario (default: vramcap load's)")
    parser.add_argument("--out", type=Path, default=Path("docs/soak.json"))
    args = parser.parse_args()
    # SIGTERM (how a job is cancelled) ends the run like Ctrl-C: the finally blocks stop the load and the server
    # (without this, a terminated soak left its llama-server running).
    signal.signal(signal.SIGTERM, _interrupt)

    shape, _, quant = args.model.partition(":")
    spec = spec_from_shape(shape, quant or "F16")
    plan = make_plan(spec, resolve_profile("16gb"), PlanRequest(agents=args.agents, ctx_per_agent=args.ctx))
    work = args.out.parent / f"{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    model = materialize_model(plan.spec, None, announce=print)
    server = LlamaServer(plan.config, model, EngineOptions(log_dir=work, startup_timeout_s=300))
    server.start()
    prefix = str(work / "locust")
    argv = [sys.executable, "-m", "pytest_vramcap.cli", "load", "--server-url", server.url,
            "--users", str(args.agents), "--run-time", str(int(args.duration)), "--csv", prefix,
            "--json", str(work / "load.json")] + (["--scenario", args.scenario] if args.scenario else [])
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    with (work / "load.log").open("w") as log:
        load = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            while load.poll() is None:
                t = time.monotonic() - started
                assert server.pid is not None
                samples.append({"t_s": round(t, 1), "harness": process_sample(load.pid),
                                "server": process_sample(server.pid), "server_tokens": server_tokens(server.url),
                                "locust": locust_counts(prefix)})  # Locust's table: chats and graphs
                time.sleep(args.interval)
        finally:
            if load.poll() is None:
                load.terminate()
            code = load.wait(timeout=120)
            server.stop()
    duration = time.monotonic() - started
    result = {"date": datetime.date.today().isoformat(), "host": f"{platform.node()} ({os.cpu_count()} cores)",
              "command": " ".join(["python", "benchmarks/soak.py", *sys.argv[1:]]),
              "server": {"model": args.model, "agents": args.agents, "ctx_per_agent": args.ctx},
              "scenario": args.scenario or "vramcap load's default",
              **summarize(samples, duration, code, _read_json(work / "load.json")),
              "samples": samples}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
