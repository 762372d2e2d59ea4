"""The recording proxy in front of a real llama-server, reached by the clients graphs use (openai, httpx).

A few cases need an engine that misbehaves on purpose or shows what it received; those use
a small upstream written here (named `capturing_upstream`), everything else the real server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pytest_vramcap.engines import free_port
from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.load.assemble import CompletionAssembler
from pytest_vramcap.load.proxy import LABEL_HEADER, RecordingProxy
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import LLAMA_SERVER

openai = pytest.importorskip("openai", reason="the openai client comes with the graph extra (dev installs it)")

QUESTION = [{"role": "user", "content": "name three colours"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if LLAMA_SERVER is None:
        pytest.skip("needs llama-server (the engine extra)")
    directory = tmp_path_factory.mktemp("proxy")
    model = write_gguf("tiny", "Q8_0", directory / "tiny-Q8_0.gguf")
    with LlamaServer(ServerConfig(parallel=3, ctx_per_agent=256), model,
                     EngineOptions(log_dir=directory, startup_timeout_s=120)) as server:
        yield server.url


@pytest.fixture
def proxy(engine: str) -> Iterator[RecordingProxy]:
    with RecordingProxy(engine, request_defaults={"cache_prompt": False}) as proxy:
        yield proxy


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def test_an_unstreamed_request_is_streamed_timed_and_answered_whole(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    answer = client(channel.base_url).chat.completions.create(
        model="m", messages=QUESTION, max_tokens=7, temperature=0, extra_body={"ignore_eos": True},
        extra_headers={LABEL_HEADER: "critic"})
    assert answer.object == "chat.completion" and answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens == 7
    [record] = channel.records
    assert record.ok and record.label == "critic" and record.status == 200
    assert record.n_out == 7 and record.n_out_source == "usage" and record.n_chunks == 7  # the engine streamed
    assert record.ttft is not None and record.tpot is not None and record.e2e is not None and record.ttft <= record.e2e
    assert record.text == answer.choices[0].message.content
    assert channel.in_flight == 0 and channel.peak_in_flight == 1


def test_a_streamed_request_is_relayed_event_by_event(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    stream = client(channel.base_url).chat.completions.create(
        model="m", messages=QUESTION, max_tokens=5, stream=True, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == channel.records[0].text
    assert all(chunk.choices for chunk in chunks)  # the usage-only chunk it did not ask for is left out
    assert channel.records[0].n_out == 5 and channel.records[0].n_out_source == "usage"

    with_usage = list(client(channel.base_url).chat.completions.create(
        model="m", messages=QUESTION, max_tokens=5, stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None


def test_engine_errors_reach_the_client_and_the_record(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    too_long = [{"role": "user", "content": "word " * 600}]  # a 256-token slot
    with pytest.raises(openai.BadRequestError):
        client(channel.base_url).chat.completions.create(model="m", messages=too_long, max_tokens=4)
    [record] = channel.records
    assert record.status == 400 and record.error_kind == "context_overflow"


def test_other_paths_pass_through_and_unknown_ones_are_refused(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    assert client(channel.base_url).models.list().data  # GET /v1/models, not recorded
    assert channel.records == []
    unknown = httpx.get(f"http://127.0.0.1:{proxy.port}/nowhere/v1/models")
    assert unknown.status_code == 404 and "no vramcap channel" in unknown.json()["error"]["message"]
    chunked = httpx.post(channel.base_url + "/chat/completions", content=iter([b"{}"]))
    assert chunked.status_code == 411


def test_requests_in_flight_are_counted(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    ask = client(channel.base_url)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: ask.chat.completions.create(model="m", messages=QUESTION, max_tokens=24,
                                                            extra_body={"ignore_eos": True}), range(3)))
    assert len(channel.records) == 3 and channel.in_flight == 0
    assert 1 <= channel.peak_in_flight <= 3
    assert len(channel.reset()) == 3 and channel.records == [] and channel.peak_in_flight == 0


def test_an_engine_that_is_gone_is_a_502_and_a_failed_record() -> None:
    with RecordingProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        channel = proxy.channel()
        with pytest.raises(openai.InternalServerError, match="the engine did not answer"):
            client(channel.base_url).chat.completions.create(model="m", messages=QUESTION, max_tokens=4)
    [record] = channel.records
    assert record.error_kind == "connection"


@contextmanager
def capturing_upstream(events: list[dict]) -> Iterator[tuple[str, list[dict]]]:
    """An engine that records each request body and streams ``events`` back as SSE."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def tool_delta(**call: object) -> dict:
    return {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **call}]}}]}


TOOL_EVENTS = [  # a tool call streamed in pieces, as OpenAI and llama-server send one
    tool_delta(id="call_1", type="function", function={"name": "search", "arguments": ""}),
    tool_delta(function={"arguments": '{"q": '}),
    tool_delta(function={"arguments": '"gpu"}'}),
    {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}},
]


def test_bodies_get_the_runners_defaults_and_the_served_model() -> None:
    with capturing_upstream(TOOL_EVENTS) as (url, bodies), \
            RecordingProxy(url, model="vramcap-created", request_defaults={"cache_prompt": False}) as proxy:
        channel = proxy.channel()
        answer = client(channel.base_url).chat.completions.create(
            model="whatever", messages=QUESTION, max_tokens=4, extra_body={"cache_prompt": True})
    sent = bodies[0]
    assert sent["model"] == "vramcap-created" and sent["cache_prompt"] is True  # the client's own value is kept
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    call = answer.choices[0].message.tool_calls[0]  # rebuilt from pieces, as the engine would have sent it whole
    assert (call.id, call.type, call.function.name, call.function.arguments) == ("call_1", "function", "search",
                                                                                 '{"q": "gpu"}')
    assert answer.choices[0].finish_reason == "tool_calls" and answer.usage.completion_tokens == 6


def test_the_assembler_merges_text_by_choice() -> None:
    assembler = CompletionAssembler()
    for text in ("Hel", "lo"):
        assembler.add({"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]})
    assembler.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "timings": {"predicted_n": 2}})
    completion = assembler.completion()
    assert completion["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                      "finish_reason": "stop"}]
    assert completion["id"] == "x" and completion["timings"] == {"predicted_n": 2}


def test_stopping_cuts_kept_alive_connections(engine: str, tmp_path: Path) -> None:
    proxy = RecordingProxy(engine).start()
    channel = proxy.channel()
    with httpx.Client() as http:
        assert http.get(channel.base_url + "/models").status_code == 200  # a kept-alive connection now
        before = {t.name for t in threading.enumerate()}
        proxy.stop()
        with pytest.raises(httpx.TransportError):
            http.get(channel.base_url + "/models")
    assert "vramcap-proxy" in before and "vramcap-proxy" not in {t.name for t in threading.enumerate()}
