"""Benchmark: what llama-server's slot choice does to agents in a loop, and what pinning each agent to a slot does.

Three agents share a long system prompt and loop over their own growing conversation, with a pause between turns
(a tool running). They start staggered, as agents of a real app do, so a newcomer's first request arrives while
the others sit between turns. llama-server gives a request the idle slot whose cached prompt shares the longest
prefix with it (``--slot-prompt-similarity``, default 0.1; empty slots are not considered while one matches),
so the newcomer can take a slot that holds another agent's conversation, which that agent then prefills again.
Variants: llama-server's default; ``--slot-prompt-similarity 0`` (no prefix matching: the least recently used
slot); and each agent pinned to a slot of its own with the request field ``id_slot``.

For each variant it prints, per agent and turn, the prompt tokens and how many came from the cache, and the
turns that lost their conversation (cached less than 90% of the turn before). The numbers in
docs/benchmarks.md come from it.

    .venv/bin/python benchmarks/bench_slot_choice.py [--model small:F16] [--pause 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
from datetime import date
from pathlib import Path

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.load.measure.client import ChatClient, ChatRequest
from pytest_vramcap.load.scenario.text import synthetic_text
from pytest_vramcap.model.loader import load_model
from pytest_vramcap.model.materialize import materialize_model
from pytest_vramcap.planner.memory import ServerConfig

AGENTS = ("coder", "researcher", "critic")
VARIANTS = {"default (similarity 0.1)": ([], False), "--slot-prompt-similarity 0": (["--slot-prompt-similarity", "0"],
                                                                                      False),
            "id_slot per agent": ([], True)}


async def agent(client: ChatClient, index: int, system: str, turns: int, pause: float, stagger: float,
                pin: bool) -> list[tuple[str, int, int, int]]:
    await asyncio.sleep(index * stagger)
    name = AGENTS[index]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"{name}: start"}]
    rows = []
    for turn in range(1, turns + 1):
        extra = {"cache_prompt": True, **({"id_slot": index} if pin else {})}
        record = await client.chat(ChatRequest(list(messages), 16, label=name, extra=extra))
        rows.append((name, turn, record.prompt_tokens or 0, record.cached_tokens or 0))
        messages += [{"role": "assistant", "content": record.text},
                     {"role": "user", "content": synthetic_text(150, f"{name}.{turn}")}]
        await asyncio.sleep(pause)  # the tool runs
    return rows


async def loop(url: str, system: str, turns: int, pause: float, stagger: float, pin: bool) -> list[tuple]:
    async with ChatClient(url) as client:
        results = await asyncio.gather(*(agent(client, i, system, turns, pause, stagger, pin)
                                         for i in range(len(AGENTS))))
    return [row for rows in results for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="small:F16")
    parser.add_argument("--system-tokens", type=int, default=1500)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between an answer and the next turn")
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between the agents' starts")
    args = parser.parse_args()
    model = materialize_model(load_model(args.model))
    system = synthetic_text(args.system_tokens, "bench.system")
    print(f"{date.today()}, {platform.node()}, {args.model}, 3 slots x 8192, {len(AGENTS)} agents x {args.turns} "
          f"turns, {args.system_tokens}-token shared system prompt, {args.pause} s between turns, starts "
          f"{args.stagger} s apart\n")
    for variant, (flags, pin) in VARIANTS.items():
        with tempfile.TemporaryDirectory() as logs, \
                LlamaServer(ServerConfig(parallel=3, ctx_per_agent=8192), model,
                            EngineOptions(log_dir=Path(logs), extra_args=flags, startup_timeout_s=300)) as server:
            rows = asyncio.run(loop(server.url, system, args.turns, args.pause, args.stagger, pin))
        previous: dict[str, int] = {}
        lost, prefilled = [], 0
        for name, turn, prompt, cached in sorted(rows, key=lambda row: (row[0], row[1])):
            prefilled += prompt - cached
            if name in previous and cached < 0.9 * previous[name]:
                lost.append(f"{name} turn {turn} ({cached:,} of {previous[name]:,})")
            previous[name] = prompt
        print(f"### {variant}\n\ntokens prefilled: {prefilled:,}; turns that lost their conversation: "
              f"{len(lost)}{': ' + ', '.join(lost) if lost else ''}\n")
        print("| agent | " + " | ".join(f"turn {t}" for t in range(1, args.turns + 1)) + " |")
        print("|---|" + "---:|" * args.turns)
        for name in AGENTS:
            cells = [f"{cached:,}/{prompt:,}" for who, _, prompt, cached in sorted(rows, key=lambda r: r[1])
                     if who == name]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
