"""Benchmark: do Locust's agent users count output tokens/s the way the server does, and what do they cost?

Starts llama-server on the CPU (the embedded engine, a synthetic model, 16 slots) and runs the
capacity scenario (one agent per user, one 64-token request after another) through Locust's
library API at 4, 16 and 64 concurrent users. While it runs, llama-server's /metrics is scraped
every second; tokens/s is compared over the same steady-state window (the first and last 5 s
left out), both counted as requests finish (the server a few ms earlier, when it frees the slot):

    server  = delta llamacpp:tokens_predicted_total / window
    Locust  = sum of output tokens (usage.completion_tokens) of requests that ended in the window / window

It also reports this process's CPU time per second per user (Locust, the users and their HTTP
client; llama-server is another process), and the same load through a second HTTP client,
``requests`` with stream=True (what Locust's HttpUser runs on), to back the choice of
geventhttpclient (FastHttpUser's client). Prints Markdown rows for docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_locust_throughput.py [--seconds 60] [--users 4 16 64]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import gevent
import locust  # noqa: F401  first: gevent patches the process before anything opens a socket
import requests
from locust import events
from locust.env import Environment

from pytest_vramcap.engines import EngineOptions, LlamaServer
from pytest_vramcap.load.capacity import CAPACITY_SCENARIO
from pytest_vramcap.load.measure.client import ChatRequest
from pytest_vramcap.load.measure.stream import ChatStream, RequestRecord
from pytest_vramcap.locust.setup import AgentUser
from pytest_vramcap.locust.state import VramcapRun, attach
from pytest_vramcap.locust.vram_view import parse_llamacpp_metrics
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig

EDGE_S = 5.0
"""Left out at both ends of a run: the spawn ramp, and the stop."""


@dataclass(eq=False)
class KeepingRun(VramcapRun):
    """The run's state, keeping every finished request too: the window below reads when each one ended."""

    records: list[RequestRecord] = field(default_factory=list)

    def request_ended(self, record: RequestRecord) -> None:
        super().request_ended(record)
        self.records.append(record)


class RequestsChatClient:
    """The same streaming request over ``requests`` (urllib3 sockets, gevent-patched), read line by line."""

    def __init__(self, base_url: str, *, model: str | None = None, **_: object) -> None:
        self.base_url, self.model = base_url.rstrip("/"), model
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def chat(self, request: ChatRequest) -> RequestRecord:
        record = RequestRecord(label=request.label, t_send=time.monotonic())
        with self.session.post(f"{self.base_url}/v1/chat/completions", json=request.body(self.model), stream=True,
                               timeout=300) as response:
            stream = ChatStream(record, response.status_code)
            # bytes, decoded per line: decoded first, requests splits with str.splitlines, which breaks at U+2028
            for line in response.iter_lines():
                if stream.feed(line.decode("utf-8", errors="replace"), time.monotonic()):
                    break
            stream.finish()
        return record


def scrape(url: str) -> float:
    return parse_llamacpp_metrics(requests.get(f"{url}/metrics", timeout=5).text)["tokens_predicted_total"]


def run(url: str, users: int, seconds: float, client: str) -> dict[str, float]:
    import pytest_vramcap.locust.users as users_module

    original = users_module.GeventChatClient
    if client == "requests":
        users_module.GeventChatClient = RequestsChatClient  # type: ignore[misc,assignment]
    environment = Environment(user_classes=[AgentUser], events=events, host=url)
    state = attach(environment, KeepingRun(scenario=CAPACITY_SCENARIO))
    state.begin()
    runner = environment.create_local_runner()
    samples: list[tuple[float, float]] = []

    def scraper() -> None:
        while True:
            samples.append((time.monotonic(), scrape(url)))
            gevent.sleep(1.0)

    cpu_start, start = _cpu(), time.monotonic()
    # Users start over 4 s: started together, every slot would finish in the same decode step, and a scrape
    # landing between the server's count and the client's [DONE] would move a whole batch across the window edge.
    runner.start(users, spawn_rate=users / 4)
    watcher = gevent.spawn(scraper)
    gevent.sleep(seconds)
    watcher.kill()
    cpu = _cpu() - cpu_start
    runner.quit()
    users_module.GeventChatClient = original  # type: ignore[misc]
    window = [(t, v) for t, v in samples if start + EDGE_S <= t <= start + seconds - EDGE_S]
    (t_a, v_a), (t_b, v_b) = window[0], window[-1]
    ours = sum(r.n_out for r in state.records if r.ok and r.t_last is not None and t_a < r.t_last <= t_b)
    return {"server_tps": (v_b - v_a) / (t_b - t_a), "locust_tps": ours / (t_b - t_a),
            "requests": len(state.records), "failed": sum(not r.ok for r in state.records),
            "cpu_per_user_pct": 100 * cpu / seconds / users, "cpu_per_1k_tokens_s": 1000 * cpu / max(
                1, sum(r.n_out for r in state.records))}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--client-users", type=int, default=16, help="users for the HTTP client comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_gguf("tiny", "Q8_0", Path(tmp) / "tiny.gguf")
        config = ServerConfig(parallel=16, ctx_per_agent=1024)
        with LlamaServer(config, model, options=EngineOptions(log_dir=Path(tmp))) as server:
            print(f"{date.today()}, {platform.node()}, {platform.processor() or platform.machine()}, "
                  f"tiny:Q8_0 on the CPU, 16 slots, {args.seconds:.0f} s per row\n")
            print("| client | users | requests (failed) | server tokens/s | Locust tokens/s | Locust / server "
                  "| CPU per user | CPU s per 1k tokens |")
            print("|---|---|---|---|---|---|---|---|")
            rows = [("geventhttpclient", users) for users in args.users] + [("requests", args.client_users)]
            for client, users in rows:
                result = run(server.url, users, args.seconds, client)
                print(f"| {client} | {users} | {result['requests']:.0f} ({result['failed']:.0f}) "
                      f"| {result['server_tps']:.1f} | {result['locust_tps']:.1f} "
                      f"| {result['locust_tps'] / result['server_tps']:.3f} | {result['cpu_per_user_pct']:.1f}% "
                      f"| {result['cpu_per_1k_tokens_s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
