"""The recording proxy in front of a real llama-server, reached by the clients graphs use (openai, httpx).

A few cases need an engine that misbehaves on purpose, is slow, or shows what it received;
those use tests/scripted_engine.py (a test double, named in each test), everything else the
real server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pytest_vramcap.engines import free_port
from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.load.proxy.assemble import CompletionAssembler
from pytest_vramcap.load.proxy.channels import LABEL_HEADER, RecordingProxy
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import LLAMA_SERVER
from tests.scripted_engine import ScriptedEngine

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
    assert channel.records == [] and channel.unrecorded == {"GET /v1/models": 1}
    unknown = httpx.get(f"http://127.0.0.1:{proxy.port}/nowhere/v1/models")
    assert unknown.status_code == 404 and "no vramcap channel" in unknown.json()["error"]["message"]
    chunked = httpx.post(channel.base_url + "/chat/completions", content=iter([b"{}"]))
    assert chunked.status_code == 411


def text_event(text: str) -> dict:
    return {"id": "x", "choices": [{"index": 0, "delta": {"content": text}}]}


STREAM_EVENTS = [text_event("a"), text_event("b"),
                 {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
                 {"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}]
SLOW = [text_event("t")] * 100
"""Streamed 50 ms apart by the scripted engine: five seconds, long after the client in these tests gave up."""


def test_unrecorded_requests_are_counted_by_endpoint_on_their_channel(proxy: RecordingProxy) -> None:
    channel, other = proxy.channel(), proxy.channel()
    ask = client(channel.base_url)
    ask.models.list()
    ask.models.list()
    httpx.post(channel.base_url + "/chat/completions", content=b"not json")  # not a completion we can read
    ask.chat.completions.create(model="m", messages=QUESTION, max_tokens=2)
    assert channel.unrecorded == {"GET /v1/models": 2, "POST /v1/chat/completions": 1}
    assert len(channel.records) == 1 and other.unrecorded == {}
    channel.reset()
    assert channel.unrecorded == {}


def test_a_proxy_without_an_engine_answers_502_until_retargeted(engine: str) -> None:
    with ScriptedEngine(STREAM_EVENTS) as scripted, RecordingProxy(None) as proxy:
        channel = proxy.channel()
        with httpx.Client() as http:  # one kept-alive connection to the proxy throughout
            refused = http.get(channel.base_url + "/models")
            assert refused.status_code == 502 and "no engine behind this endpoint" in refused.text
            proxy.retarget(engine)
            assert http.get(channel.base_url + "/models").json()["data"]  # the real llama-server
            proxy.retarget(scripted.url, model="other")
            answer = http.post(channel.base_url + "/chat/completions", json={"model": "m", "messages": QUESTION})
            # the handler dropped its connection to the previous engine: this one went to the new one
            assert answer.status_code == 200 and scripted.bodies[0]["model"] == "other"


def test_text_completions_are_recorded_too(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    ask = client(channel.base_url)
    pieces = list(ask.completions.create(model="m", prompt="colours:", max_tokens=5, stream=True,
                                         extra_body={"ignore_eos": True}))
    whole = ask.completions.create(model="m", prompt="colours:", max_tokens=5, extra_body={"ignore_eos": True})
    streamed, unstreamed = channel.records
    assert streamed.ok and streamed.ttft is not None and streamed.n_out == 5
    assert streamed.text == "".join(piece.choices[0].text for piece in pieces if piece.choices)
    # a text completion the client did not stream is passed through as it asked: its end and its usage
    assert unstreamed.ok and unstreamed.ttft is None and unstreamed.e2e is not None
    assert unstreamed.n_out == 5 and unstreamed.n_out_source == "usage" and whole.choices[0].text


def test_a_client_that_gives_up_stops_the_engine_and_ends_its_record() -> None:
    # the scripted engine (a test double) streams for five seconds; the client waits half of one
    with ScriptedEngine(SLOW, delay_s=0.05) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()
        with pytest.raises(httpx.ReadTimeout):  # unstreamed: the proxy answers once the engine has ended
            httpx.post(channel.base_url + "/chat/completions", json={"messages": QUESTION}, timeout=0.5)
        assert channel.wait_idle(30)
        [record] = channel.records
        assert record.error_kind == "connection" and "the client closed its connection" in (record.error or "")
        [answer] = upstream.answers
        assert answer.ended.wait(30) and answer.client_left and answer.written < len(SLOW)


def test_two_hundred_clients_that_leave_mid_stream_leave_no_connection_or_thread_behind() -> None:
    """Issue 28: 200 streams in flight through the proxy at once (the scripted engine, a test double, holds them
    until all have arrived), each client gone after its first chunk: every engine connection is closed (the
    engine's next write fails), every record ends, and the proxy's and engine's handler threads all end."""
    clients = 200
    before = set(threading.enumerate())
    with ScriptedEngine(SLOW, delay_s=0.05, gather=clients) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()

        def leave_after_first_chunk(_: int) -> bool:
            with httpx.stream("POST", channel.base_url + "/chat/completions", timeout=120,
                              json={"messages": QUESTION, "stream": True}) as answer:
                return next(answer.iter_bytes(), b"") != b""  # then the connection is closed

        with ThreadPoolExecutor(clients) as pool:
            assert all(pool.map(leave_after_first_chunk, range(clients)))
        assert channel.wait_idle(60)
        assert len(channel.records) == clients and all(not record.ok for record in channel.records)
        assert len(upstream.answers) == clients
        assert all(answer.ended.wait(60) and answer.client_left for answer in upstream.answers)
        assert all(answer.written < len(SLOW) for answer in upstream.answers)
    deadline = time.monotonic() + 60
    while (left := [t for t in set(threading.enumerate()) - before if t.is_alive()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left

@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_gives_up_before_the_first_byte_drops_its_request(stream: bool) -> None:
    # the scripted engine (a test double) starts its answer after 3 s, as a queue or a long prefill would
    with ScriptedEngine(SLOW, head_delay_s=3) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(channel.base_url + "/chat/completions", json={"messages": QUESTION, "stream": stream},
                       timeout=0.5)
        assert channel.wait_idle(2.4)  # before the engine has sent anything: the proxy saw the client leave
        [record] = channel.records
        assert "the client closed its connection before the engine answered" in (record.error or "")
        [answer] = upstream.answers
        assert answer.ended.wait(30) and answer.client_left and answer.written == 0


def test_stopping_cuts_requests_in_flight_and_their_engine_connections() -> None:
    with ScriptedEngine(SLOW, delay_s=0.05) as upstream:
        proxy = RecordingProxy(upstream.url).start()
        channel = proxy.channel()
        outcome: list[object] = []

        def ask() -> None:
            try:
                outcome.append(httpx.post(channel.base_url + "/chat/completions", json={"messages": QUESTION},
                                          timeout=60))
            except httpx.TransportError as exc:
                outcome.append(exc)

        asking = threading.Thread(target=ask)
        asking.start()
        while not upstream.answers:  # the request reached the engine
            time.sleep(0.01)
        proxy.stop()
        asking.join(30)
        assert not asking.is_alive() and isinstance(outcome[0], httpx.TransportError)
        assert upstream.answers[0].ended.wait(30) and upstream.answers[0].client_left
        assert channel.wait_idle(30) and channel.records[0].error_kind == "connection"


@pytest.mark.parametrize(("events", "done", "complaint"), [
    ([text_event("a"), b"not json", text_event("b")], True, "a stream event is not JSON"),
    ([text_event("a"), text_event("b")], False, "without [DONE]"),
])
def test_a_stream_the_proxy_cannot_read_reaches_a_streaming_client_whole(events: list, done: bool,
                                                                          complaint: str) -> None:
    with ScriptedEngine(events, done=done) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()
        with httpx.stream("POST", channel.base_url + "/chat/completions",
                          json={"messages": QUESTION, "stream": True}) as response:
            body = response.read()  # no RemoteProtocolError: the HTTP answer ends as the engine's did
    assert body.count(b"data: ") == len(events) + done and body.endswith(b"data: [DONE]\n\n" if done else b"}\n\n")
    [record] = channel.records
    assert not record.ok and complaint in (record.error or "")


def test_unrecorded_streams_are_relayed_as_they_come() -> None:
    with ScriptedEngine(SLOW, delay_s=0.05) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()
        with httpx.stream("POST", channel.base_url + "/responses", json={"stream": True}) as response:
            first = next(response.iter_lines())
            assert first == 'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "t"}}]}'
            assert not upstream.answers[0].ended.is_set()  # the engine is still streaming: nothing was buffered
        assert channel.records == []  # /responses is passed through, not recorded


def test_channel_urls_are_not_reused_by_a_later_proxy() -> None:
    with RecordingProxy("http://127.0.0.1:9") as first, RecordingProxy("http://127.0.0.1:9") as second:
        paths = {first.channel().base_url.split("/", 3)[3], second.channel().base_url.split("/", 3)[3]}
        released = second.channel()
        second.release(released)
        assert httpx.get(released.base_url + "/models").status_code == 404
    assert len(paths) == 2


def test_requests_in_flight_are_counted(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    ask = client(channel.base_url)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: ask.chat.completions.create(model="m", messages=QUESTION, max_tokens=24,
                                                            extra_body={"ignore_eos": True}), range(3)))
    assert len(channel.records) == 3 and channel.in_flight == 0
    assert len(channel.reset()) == 3 and channel.records == [] and channel.peak_in_flight == 0


def test_the_peak_in_flight_is_a_count_not_a_clock() -> None:
    # the scripted engine (a test double) holds its answers until all three requests have arrived
    with ScriptedEngine(STREAM_EVENTS, gather=3) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()
        ask = client(channel.base_url)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda i: ask.chat.completions.create(model="m", messages=QUESTION), range(3)))
        assert channel.peak_in_flight == 3 and channel.in_flight == 0 and len(channel.records) == 3
        assert all(record.ok and record.n_out == 2 for record in channel.reset()) and channel.peak_in_flight == 0


def test_an_engine_that_is_gone_is_a_502_and_a_failed_record() -> None:
    with RecordingProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        channel = proxy.channel()
        with pytest.raises(openai.InternalServerError, match="the engine did not answer"):
            client(channel.base_url).chat.completions.create(model="m", messages=QUESTION, max_tokens=4)
    [record] = channel.records
    assert record.error_kind == "connection"


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
    with ScriptedEngine(TOOL_EVENTS) as upstream, \
            RecordingProxy(upstream.url, model="vramcap-created", request_defaults={"cache_prompt": False}) as proxy:
        channel = proxy.channel()
        answer = client(channel.base_url).chat.completions.create(
            model="whatever", messages=QUESTION, max_tokens=4, extra_body={"cache_prompt": True})
    sent = upstream.bodies[0]
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
