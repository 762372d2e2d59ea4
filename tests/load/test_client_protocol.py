"""The streaming client against answers that break the OpenAI stream format: each is one ProtocolError
carrying the partial record, never a JSONDecodeError, a RecursionError or a negative token count.

The answers come from an ``httpx.MockTransport``: these are tests of the client's own reading, which needs no
engine (tests/engines/test_llamacpp.py runs the same client against the real llama-server)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from pytest_vramcap.load.measure.client import ChatClient, ChatRequest, RequestRecord
from pytest_vramcap.load.measure.record import ProtocolError, StreamCut
from pytest_vramcap.load.measure.stream import ChatStream
from tests.factories import sse


def ask(body: bytes) -> RequestRecord:
    """One chat request answered with ``body`` as an event stream; the request is checked on the way."""
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions" and json.loads(request.content)["stream"] is True
        return httpx.Response(200, content=body, headers={"Content-Type": "text/event-stream"})

    async def run() -> RequestRecord:
        async with ChatClient("http://engine.test", transport=httpx.MockTransport(answer)) as client:
            return await client.chat(ChatRequest([{"role": "user", "content": "hi"}], 4, label="probe"))

    return asyncio.run(run())


TOKEN = {"choices": [{"delta": {"content": "x"}, "finish_reason": None}]}
DONE = {"choices": [{"delta": {}, "finish_reason": "length"}]}


@pytest.mark.parametrize("body, message", [
    (sse(TOKEN, "{this is not json", "[DONE]"), "a stream event is not JSON"),
    (sse(TOKEN, "[" * 50000 + "]" * 50000, "[DONE]"), "a stream event is not JSON"),
    (sse(TOKEN, [1, 2], "[DONE]"), "a stream event is list, not an object"),
    (sse({"choices": "x"}, "[DONE]"), "'choices' is not a list of objects"),
    (sse(TOKEN, {**DONE, "usage": {"completion_tokens": "four"}}, "[DONE]"), "usage.completion_tokens must be an"),
    (sse(TOKEN, {**DONE, "usage": {"completion_tokens": -40}}, "[DONE]"), "usage.completion_tokens must be >= 0"),
    (sse(TOKEN, {**DONE, "usage": {"completion_tokens": 4, "prompt_tokens": 1e400}}, "[DONE]"),
     "usage.prompt_tokens must be a finite number"),
    (sse(TOKEN, {**DONE, "usage": {"completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": -1}}}, "[DONE]"),
     "usage.prompt_tokens_details.cached_tokens must be >= 0"),
    (sse(TOKEN, {**DONE, "usage": {"completion_tokens": 1}, "timings": {"cache_n": "all"}}, "[DONE]"),
     "timings.cache_n must be an"),
], ids=["garbage", "nested", "list", "choices", "usage-string", "usage-negative", "usage-inf", "cached-negative",
        "cache_n-string"])
def test_malformed_streams(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as excinfo:
        ask(body)
    assert excinfo.value.record is not None and excinfo.value.record.error


def test_a_well_formed_stream_still_counts() -> None:
    body = sse(TOKEN, TOKEN, {**DONE, "usage": {"completion_tokens": 2, "prompt_tokens": 3}}, "[DONE]")
    record = ask(body)
    assert (record.n_out, record.n_out_source, record.prompt_tokens, record.text) == (2, "usage", 3, "xx")


def test_line_separators_inside_a_json_string_stay_in_their_event() -> None:
    """llama-server writes U+0085, U+2028 and U+2029 unescaped (its JSON encoder escapes only what JSON requires);
    a synthesized model's random tokens produced them. They are not line breaks of the stream."""
    pieces = ["one\u2028two", "three\x85four", "five\u2029six"]
    raw = [json.dumps({"choices": [{"delta": {"content": piece}, "finish_reason": None}]}, ensure_ascii=False)
           for piece in pieces]
    record = ask(sse(*raw, {**DONE, "usage": {"completion_tokens": 3, "prompt_tokens": 1}}, "[DONE]"))
    assert record.ok and record.text == "".join(pieces) and record.n_chunks == 3


@pytest.mark.parametrize(("final", "cached"), [
    ({"usage": {"completion_tokens": 1, "prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 6}}}, 6),
    ({"usage": {"completion_tokens": 1, "prompt_tokens": 9}, "timings": {"cache_n": 8, "prompt_ms": 2.5}}, 8),
    ({"usage": {"completion_tokens": 1, "prompt_tokens": 9}}, None),
], ids=["openai-details", "llama-server-timings", "not-said"])
def test_cached_prompt_tokens_are_what_the_engine_says(final: dict, cached: int | None) -> None:  # type: ignore[type-arg]
    record = ask(sse(TOKEN, {**DONE, **final}, "[DONE]"))
    assert record.cached_tokens == cached
    assert record.prefill_s == (0.0025 if "timings" in final else None)


def test_a_stream_without_done_is_cut_even_after_a_finish_reason() -> None:
    """llama-server and Ollama's /v1 end every complete stream with [DONE]; without it the answer may be partial."""
    with pytest.raises(StreamCut, match="without \\[DONE\\]") as excinfo:
        ask(sse(TOKEN, DONE))
    assert excinfo.value.record is not None and excinfo.value.record.n_chunks == 1


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_tokens_are_the_first_token(field: str) -> None:
    """A thinking model streams its reasoning first: Ollama as delta.reasoning, llama-server as reasoning_content."""
    thought = {"choices": [{"delta": {field: "hmm"}, "finish_reason": None}]}
    record = ask(sse(thought, TOKEN, DONE, "[DONE]"))
    assert record.text == "hmmx"
    assert record.n_chunks == 2
    assert record.t_first is not None and record.t_last is not None and record.t_first <= record.t_last


def test_tool_call_pieces_are_tokens_and_text_completions_are_read() -> None:
    """An agent's answer may be a tool call alone: its pieces are its tokens (the first one is TTFT). A text
    completion (/v1/completions) carries ``choices[].text`` instead of a delta."""
    record = RequestRecord(label="tool", t_send=0.0)
    stream = ChatStream(record)
    call = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "search", "arguments": ""}}]}}]}
    stream.feed(f"data: {json.dumps(call)}", 1.0)
    stream.feed('data: {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}', 2.0)
    assert (record.ttft, record.n_chunks, record.n_out, record.text) == (1.0, 2, 2, "")

    text = RequestRecord(label="completion", t_send=0.0)
    ChatStream(text).feed('data: {"choices": [{"text": "Hel", "index": 0}]}', 0.5)
    assert (text.ttft, text.text, text.n_out) == (0.5, "Hel", 1)
