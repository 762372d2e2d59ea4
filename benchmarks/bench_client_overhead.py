"""Benchmark: is our streaming client ever the bottleneck?

Starts llama-server on the CPU with a synthetic model, streams the same requests
through `pytest_vramcap.client.ChatClient`, and compares, per request, the decode
rate the client observed ((N_out - 1) / (t_last - t_first)) with the rate the
server itself timed (``timings.predicted_per_second``), and the client's own CPU
time per chunk. Prints a Markdown table for docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_client_overhead.py [--shape tiny] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from pytest_vramcap.engines import EngineOptions, LlamaServer
from pytest_vramcap.load.measure.client import ChatClient, ChatRequest
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig


async def one_round(url: str, agents: int, max_tokens: int) -> tuple[list, float]:
    async with ChatClient(url) as client:
        requests = [ChatRequest([{"role": "user", "content": f"agent {i}: write the report " * 4}], max_tokens,
                                label=f"agent-{i}") for i in range(agents)]
        cpu_start = time.process_time()
        records = await asyncio.gather(*(client.chat(r) for r in requests))
        return list(records), time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="tiny")
    parser.add_argument("--quant", default="Q8_0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = write_gguf(args.shape, args.quant, Path(tmp) / "model.gguf")
        for agents in (1, 4):
            config = ServerConfig(parallel=agents, ctx_per_agent=1024)
            with LlamaServer(config, model, EngineOptions(log_dir=Path(tmp))) as server:
                asyncio.run(one_round(server.url, agents, 16))  # warm-up
                ratios, cpu_per_chunk, client_tps, server_tps = [], [], [], []
                for _ in range(args.rounds):
                    records, cpu = asyncio.run(one_round(server.url, agents, args.max_tokens))
                    for record in records:
                        observed = (record.n_out - 1) / (record.t_last - record.t_first)
                        reported = record.server_timings["predicted_per_second"]
                        client_tps.append(observed)
                        server_tps.append(reported)
                        ratios.append(observed / reported)
                    cpu_per_chunk.append(cpu / sum(r.n_chunks for r in records))
                rows.append((agents, len(ratios), statistics.median(server_tps), statistics.median(client_tps),
                             statistics.median(ratios), min(ratios), 1e6 * statistics.median(cpu_per_chunk)))
    print(f"date: {date.today()}  machine: {platform.machine()} {platform.processor() or ''}, "
          f"Python {platform.python_version()}  model: {args.shape} {args.quant}, {args.max_tokens} tokens/request")
    print("| agents | requests | server tok/s (median) | client-observed tok/s | client/server (median) | "
          "client/server (min) | client CPU per chunk (us) |")
    print("|---|---|---|---|---|---|---|")
    for agents, n, server, client, ratio, worst, cpu in rows:
        print(f"| {agents} | {n} | {server:.1f} | {client:.1f} | {ratio:.3f} | {worst:.3f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
