"""What the recording proxy adds: time per request, and tokens/s of a real graph.

1. Per request, against an engine that answers at once (a child process of this script
   streaming ``--chunks`` SSE events with no delay), so the difference is the proxy alone:
   the same requests sent directly and through the proxy, alternating one by one, by the
   openai client graphs use (langchain-openai); TTFT and E2E as that client sees them,
   streamed, and unstreamed (which the proxy streams from the engine and rebuilds).
2. Tokens/s of scenarios/research_graph.py on a real llama-server (small:F16, 4 slots,
   CPU): parallel invocations built on the server's URL (ChatOpenAI as shipped, unstreamed;
   and with ``streaming=True``) and on a proxy channel, taking turns.

With ``--baseline-ref REF`` (repeatable; a git ref, or a directory holding a ``pytest_vramcap`` package, where
there is no git history), part 1 only, for several proxies on the same host in one run: REF's
``src/`` (``git archive``, in a temporary directory) and this tree's, each in child
processes of its own (``PYTHONPATH`` at its ``src/``), taking turns round by round against
the same instant engine, for each ``--chunks`` count; added ms are medians over all pairs.

    .venv/bin/python benchmarks/bench_proxy_overhead.py [--requests 400] [--chunks 64] [--graph-runs 6]
    .venv/bin/python benchmarks/bench_proxy_overhead.py --baseline-ref e3100b5 --requests 300 --chunks 8 64
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "hello"}]
WARM_UP = 10
"""Pairs a child process sends before those it counts (its first requests pay for imports and connections)."""
# pytest_vramcap is imported where it is used: a measuring child imports only the proxy, from its own PYTHONPATH.


def serve_instant_engine(port: int, chunks: int) -> None:
    """An OpenAI-compatible engine that answers every chat completion at once (the child process)."""
    sys.path.insert(0, str(ROOT))
    from tests.scripted_engine import ScriptedEngine  # the test double the proxy's tests use too

    token: dict[str, Any] | bytes = {"id": "x", "choices": [{"index": 0, "delta": {"content": "tok"}}]}
    events = [token] * chunks
    events += [{"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
               {"id": "x", "choices": [], "usage": {"completion_tokens": chunks, "prompt_tokens": 2}}]
    whole = {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "tok" * chunks}, "finish_reason": "length"}],
        "usage": {"completion_tokens": chunks, "prompt_tokens": 2}}
    ScriptedEngine(events, whole=whole, port=port).serve_forever()


async def streamed_pairs(engine: str, proxied: str, requests: int, chunks: int) -> dict[str, list[float]]:
    """The openai client, streaming (what langchain-openai uses): time to the first content chunk, and to the end."""
    import openai

    results: dict[str, list[float]] = {"direct_ttft": [], "proxy_ttft": [], "direct_e2e": [], "proxy_e2e": []}
    clients = {"direct": openai.AsyncOpenAI(base_url=engine + "/v1", api_key="unused"),
               "proxy": openai.AsyncOpenAI(base_url=proxied + "/v1", api_key="unused")}
    for i in range(requests):
        for name in ("direct", "proxy")[:: 1 if i % 2 else -1]:
            start, first = time.monotonic(), None
            stream = await clients[name].chat.completions.create(model="m", messages=MESSAGES,  # type: ignore[arg-type]
                                                                 max_tokens=chunks, stream=True)
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.monotonic()
            results[f"{name}_ttft"].append((first or start) - start)
            results[f"{name}_e2e"].append(time.monotonic() - start)
    for client in clients.values():
        await client.close()
    return results


def unstreamed_pairs(engine: str, proxied: str, requests: int) -> dict[str, list[float]]:
    """The openai client, not streaming (ChatOpenAI's default): the proxy streams from the engine and rebuilds."""
    import openai

    results: dict[str, list[float]] = {"direct_e2e": [], "proxy_e2e": []}
    clients = {"direct": openai.OpenAI(base_url=engine + "/v1", api_key="unused"),
               "proxy": openai.OpenAI(base_url=proxied + "/v1", api_key="unused")}
    for i in range(requests):
        for name in ("direct", "proxy")[:: 1 if i % 2 else -1]:
            start = time.monotonic()
            clients[name].chat.completions.create(model="m", messages=MESSAGES, max_tokens=8)  # type: ignore[arg-type]
            results[f"{name}_e2e"].append(time.monotonic() - start)
    return results


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.3f}"


@contextmanager
def instant_engine(chunks: int) -> Iterator[str]:
    """The instant engine in a child process, ready: its URL."""
    from pytest_vramcap.engines import free_port

    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve-engine", str(port), "--chunks", str(chunks)])
    engine = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.post(engine + "/v1/chat/completions", json={"messages": MESSAGES}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield engine
    finally:
        child.terminate()
        child.wait()


def measure(engine: str, requests: int, chunks: int, warm_up: int = 0) -> dict[str, dict[str, list[float]]]:
    """Both kinds of request, direct and through a proxy of this process, ``warm_up`` pairs not counted."""
    from pytest_vramcap.load.proxy.channels import RecordingProxy

    with RecordingProxy(engine) as proxy:
        proxied = proxy.channel().base_url.removesuffix("/v1")
        streamed = asyncio.run(streamed_pairs(engine, proxied, requests + warm_up, chunks))
        whole = unstreamed_pairs(engine, proxied, requests + warm_up)
    return {kind: {name: values[warm_up:] for name, values in data.items()}
            for kind, data in (("streamed", streamed), ("unstreamed", whole))}


def added(data: dict[str, list[float]], measure: str) -> float:
    """The median of (through the proxy - direct) over the pairs, in ms."""
    return statistics.median(p - d for p, d in zip(data[f"proxy_{measure}"], data[f"direct_{measure}"],
                                                   strict=True)) * 1000


MEASURES = (("streamed", "ttft"), ("streamed", "e2e"), ("unstreamed", "e2e"))


def per_request(args: argparse.Namespace) -> None:
    for chunks in args.chunks:
        with instant_engine(chunks) as engine:
            results = measure(engine, args.requests, chunks)
        print(f"\n### Per request ({args.requests} pairs, {chunks} chunks each, engine answering at once)\n")
        print("| request | measure | direct median ms | through the proxy ms | added ms |")
        print("|---|---|---:|---:|---:|")
        for kind, name in MEASURES:
            data = results[kind]
            print(f"| {kind} | {name.upper()} | {ms(data[f'direct_{name}'])} | {ms(data[f'proxy_{name}'])} | "
                  f"{added(data, name):.3f} |")


def checkout_src(ref: str, into: Path) -> Path:
    """``ref``'s ``src/`` written under ``into`` (git archive): the directory to put on PYTHONPATH. A directory
    that holds the package is taken as it is."""
    if (Path(ref) / "pytest_vramcap").is_dir():
        return Path(ref)
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure_in_child(src: Path, engine: str, requests: int, chunks: int) -> dict[str, Any]:
    """One turn: a child process with ``src`` first on its path measures ``requests`` pairs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(src), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, __file__, "--measure-child", engine, "--requests", str(requests),
                           "--chunks", str(chunks)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the child measuring {src} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["package"]).resolve().parents[1] != src.resolve():
        raise RuntimeError(f"the child imported pytest_vramcap from {result['package']}, not from {src}")
    return result


def compare(args: argparse.Namespace) -> None:
    """Part 1 for REF's proxy and this tree's, taking turns in child processes of their own."""
    rounds = max(1, args.rounds)
    per_round = math.ceil(args.requests / rounds)
    with tempfile.TemporaryDirectory() as tmp:
        sources = {f"old ({ref})" if len(args.baseline_ref) == 1 else ref: checkout_src(ref, Path(tmp) / str(i))
                   for i, ref in enumerate(args.baseline_ref)}
        sources["new"] = ROOT / "src"
        pairs: dict[tuple[str, int], dict[str, dict[str, list[float]]]] = {}
        for chunks in args.chunks:
            with instant_engine(chunks) as engine:
                for turn in range(rounds):
                    names = list(sources)[:: 1 if turn % 2 == 0 else -1]  # each goes first in turn
                    for name in names:
                        result = measure_in_child(sources[name], engine, per_round, chunks)
                        into = pairs.setdefault((name, chunks), {})
                        for kind, data in result["pairs"].items():
                            for measure_name, values in data.items():
                                into.setdefault(kind, {}).setdefault(measure_name, []).extend(values)
    names = list(sources)
    print(f"\n### Per request, two proxies taking turns ({rounds} rounds of {per_round} pairs each, after "
          f"{WARM_UP} not counted; engine answering at once)\n")
    header = " | ".join(f"{chunks} events: {name}" for chunks in args.chunks for name in names)
    print(f"| request | measure | {header} |")
    print("|---|---|" + "---:|" * (len(args.chunks) * len(names)))
    for kind, name in MEASURES:
        cells = " | ".join(f"{added(pairs[(impl, chunks)][kind], name):.3f}" for chunks in args.chunks
                           for impl in names)
        print(f"| {kind} | {name.upper()} added ms | {cells} |")
    cells = " | ".join(ms(pairs[(impl, chunks)]["streamed"]["direct_ttft"]) for chunks in args.chunks
                       for impl in names)
    print(f"| streamed | TTFT direct ms (the host's speed) | {cells} |")


def graph_tokens_per_second(args: argparse.Namespace) -> None:
    import functools

    from pytest_vramcap.engines import EngineOptions, LlamaServer
    from pytest_vramcap.load.proxy.channels import RecordingProxy
    from pytest_vramcap.load.scenario.graph_source import load_builder
    from pytest_vramcap.load.scenario.schema import GraphRef
    from pytest_vramcap.model.synth import write_gguf
    from pytest_vramcap.planner.memory import ServerConfig

    build = load_builder(GraphRef(file=ROOT / "scenarios" / "research_graph.py", attribute="build"))
    module = sys.modules[build.__module__]
    tokens = 4 * 320 + 16
    question = {"question": "self-host an LLM for coding agents, or use an API?", "notes": []}
    walls: dict[str, list[float]] = {}
    shape, _, mix = args.model.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(args.models_dir or tmp)
        model = models / f"{shape}-{mix}.gguf"  # the name the plugin gives it: a seed run's model is reused
        if not model.is_file():
            write_gguf(shape, mix, model)
        with LlamaServer(ServerConfig(parallel=4, ctx_per_agent=2048), model,
                         EngineOptions(log_dir=Path(tmp), startup_timeout_s=300)) as server, \
                RecordingProxy(server.url) as proxy:  # no request defaults: the pass-through alone
            chat_openai = module.ChatOpenAI
            module.ChatOpenAI = functools.partial(chat_openai, streaming=True)  # the client itself streaming
            streaming = build(server.url + "/v1")
            module.ChatOpenAI = chat_openai
            graphs = {"direct": build(server.url + "/v1"), "direct, client streaming": streaming,
                      "through the proxy": build(proxy.channel().base_url)}

            async def run() -> None:
                await graphs["direct"].ainvoke(dict(question))  # warm-up
                for i in range(args.graph_runs):
                    names = list(graphs)
                    for name in names[i % len(names):] + names[:i % len(names)]:  # each goes first in turn
                        start = time.monotonic()
                        await graphs[name].ainvoke(dict(question))
                        walls.setdefault(name, []).append(time.monotonic() - start)

            asyncio.run(run())
    where = "the GPU" if shutil.which("nvidia-smi") else "CPU"  # a GPU machine runs the CUDA build
    print(f"\n### research_graph.py, parallel, {args.graph_runs} invocations each, {args.model} on {where} (4 slots)\n")
    print("| base URL | median wall s | tokens/s (median) | tokens/s per run |")
    print("|---|---:|---:|---|")
    for name, values in walls.items():
        rates = [tokens / wall for wall in values]
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.median(rates):.1f} | "
              f"{', '.join(f'{rate:.0f}' for rate in rates)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64], help="events per answer (one or more counts)")
    parser.add_argument("--graph-runs", type=int, default=6)
    parser.add_argument("--serve-engine", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure-child", metavar="ENGINE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--skip-graph", action="store_true", help="only the per-request part")
    parser.add_argument("--baseline-ref", metavar="GIT_REF|SRC_DIR", action="append",
                        help="measure that commit's (or src directory's) proxy and this tree's, taking turns "
                             "(part 1 only; repeatable)")
    parser.add_argument("--rounds", type=int, default=6, help="turns each proxy takes with --baseline-ref")
    parser.add_argument("--model", default="small:F16", help="SHAPE:MIX the graph's server runs (synthesized)")
    parser.add_argument("--models-dir", help="where SHAPE-MIX.gguf is, or is written (default: a temporary one)")
    args = parser.parse_args()
    if args.serve_engine:
        serve_instant_engine(args.serve_engine, args.chunks[0])
        return
    if args.measure_child:
        import pytest_vramcap

        pairs = measure(args.measure_child, args.requests, args.chunks[0], WARM_UP)
        print(json.dumps({"package": pytest_vramcap.__file__, "pairs": pairs}))
        return
    print(f"{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; command: python benchmarks/bench_proxy_overhead.py "
          f"{' '.join(sys.argv[1:])}")
    if args.baseline_ref:
        compare(args)
        return
    per_request(args)
    if not args.skip_graph:
        graph_tokens_per_second(args)


if __name__ == "__main__":
    main()
