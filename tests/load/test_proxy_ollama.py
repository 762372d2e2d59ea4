"""Ollama's native API through the recording proxy, reached by the Ollama client apps use (ollama-python).

On the real llama-server the proxy translates (as Ollama's own runner does); on an engine
that serves Ollama's API it relays. That engine is the Ollama double (tests/ollama_double: no
Ollama binary can be installed here) in front of a real llama-server, and, for an answer no
real engine gives on demand (an error line mid-stream), tests/scripted_engine.py, named where used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_vramcap.engines.ollama import OllamaServer
from pytest_vramcap.load.proxy import ollama as translate
from pytest_vramcap.load.proxy.channels import LABEL_HEADER, RecordingProxy
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import needs_llama_server
from tests.ollama_double import launcher
from tests.scripted_engine import ScriptedEngine

ollama = pytest.importorskip("ollama", reason="the ollama client comes with the graph extra (dev installs it)")

QUESTION = [{"role": "user", "content": "name three colours"}]


@pytest.fixture
def proxy(tiny_server: str) -> Iterator[RecordingProxy]:
    with RecordingProxy(tiny_server, request_defaults={"cache_prompt": False}) as proxy:
        yield proxy


def client(base_url: str, label: str = "coder") -> ollama.Client:
    """An Ollama client on a channel, given its URL as OLLAMA_HOST would be (no /v1)."""
    return ollama.Client(host=base_url.removesuffix("/v1"), headers={LABEL_HEADER: label})


@needs_llama_server
def test_a_chat_on_llama_server_is_translated_timed_and_answered_as_ollama_does(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    answer = client(channel.base_url).chat(model="qwen2.5:14b", messages=QUESTION, keep_alive="10m",
                                           options={"num_predict": 5, "num_ctx": 8192, "temperature": 0})
    assert answer.done and answer.done_reason == "length" and answer.message.role == "assistant"
    assert answer.message.content and answer.eval_count == 5 and answer.prompt_eval_count
    (record,) = channel.records
    assert record.ok and record.label == "coder" and record.n_out == 5 and record.finish_reason == "length"
    assert record.ttft is not None and record.e2e is not None and 0 < record.ttft <= record.e2e
    assert record.text == answer.message.content
    assert record.client_options == {"num_predict": 5, "num_ctx": 8192, "temperature": 0, "keep_alive": "10m"}


@needs_llama_server
def test_a_streamed_chat_is_relayed_as_ndjson_with_the_done_object_last(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    parts = list(client(channel.base_url).chat(model="m", messages=QUESTION, stream=True,
                                               options={"num_predict": 4, "temperature": 0}))
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    final = parts[-1]
    assert final.done_reason == "length" and final.eval_count == 4 and final.total_duration
    (record,) = channel.records
    assert record.n_out == 4 and record.text == "".join(part.message.content for part in parts)
    assert record.n_chunks == len(parts) - 1


@needs_llama_server
def test_generate_with_a_template_and_raw_are_recorded(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    templated = client(channel.base_url).generate(model="m", prompt="hello", system="be brief",
                                                  options={"num_predict": 3})
    raw = client(channel.base_url).generate(model="m", prompt="hello", raw=True, options={"num_predict": 3})
    assert templated.response and raw.response and templated.eval_count == raw.eval_count == 3
    # the chat template wraps the system and the prompt in more tokens than the raw prompt alone
    assert templated.prompt_eval_count > raw.prompt_eval_count
    assert [record.n_out for record in channel.records] == [3, 3]


@needs_llama_server
def test_what_clients_ask_before_they_chat_is_answered_and_counted_unrecorded(proxy: RecordingProxy,
                                                                             tiny_server: str) -> None:
    channel = proxy.channel()
    ollama_client = client(channel.base_url)
    assert ollama_client.generate(model="m").done_reason == "load"
    assert ollama_client.generate(model="m", keep_alive=0).done_reason == "unload"
    assert httpx.get(channel.base_url.removesuffix("/v1") + "/api/version").json() == {"version": "0.33.0"}
    (listed,) = ollama_client.list().models
    assert listed.size and listed.details.parameter_size.endswith("M")
    assert ollama_client.show("qwen2.5:14b").modelinfo["general.parameter_count"] > 0
    (loaded,) = ollama_client.ps().models
    slots = httpx.get(tiny_server + "/props").json()["default_generation_settings"]["n_ctx"]
    assert loaded.context_length == slots and loaded.size_vram is None  # not known to the proxy: not made up
    assert channel.records == []
    assert channel.unrecorded == {"POST /api/generate": 2, "GET /api/version": 1, "GET /api/tags": 1,
                                  "POST /api/show": 1, "GET /api/ps": 1}


@needs_llama_server
def test_the_channels_v1_url_takes_ollamas_routes_too(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    answer = httpx.post(channel.base_url + "/api/chat", timeout=60, json={
        "model": "m", "messages": QUESTION, "stream": False, "options": {"num_predict": 2}}).json()
    assert answer["done"] is True and answer["eval_count"] == 2 and len(channel.records) == 1


@needs_llama_server
def test_an_engine_error_is_ollamas_error_object_and_a_failed_record(proxy: RecordingProxy) -> None:
    channel = proxy.channel()
    long_prompt = [{"role": "user", "content": "colour " * 400}]  # past the slot's 256 tokens
    with pytest.raises(ollama.ResponseError) as raised:
        client(channel.base_url).chat(model="m", messages=long_prompt, options={"num_predict": 2})
    assert raised.value.status_code == 400 and "context" in raised.value.error
    (record,) = channel.records
    assert record.error_kind == "context_overflow" and record.status == 400


def test_a_native_request_becomes_the_body_ollamas_runner_sends_llama_server() -> None:
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    path, body = translate.openai_request("chat", {
        "model": "m", "think": "high", "format": {"type": "object"}, "tools": [tool],
        "options": {"num_predict": 64, "stop": ["\n\n"], "top_k": 5, "num_ctx": 8192, "num_keep": 8},
        "messages": [{"role": "User", "content": "look", "images": [image]},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"function": {"index": 0, "name": "add", "arguments": {"a": 1}}}]},
                     {"role": "tool", "content": "2", "tool_name": "add"}]})
    assert path == "/chat/completions" and body["max_tokens"] == 64 and body["stop"] == ["\n\n"]
    # api.DefaultOptions under the client's options
    assert body["top_k"] == 5 and body["n_keep"] == 8 and body["temperature"] == 0.8
    assert "num_ctx" not in body and "cache_prompt" not in body  # a runner option; the proxy's defaults decide
    assert body["tools"] == [tool] and body["chat_template_kwargs"] == {"enable_thinking": True,
                                                                        "reasoning_effort": "high"}
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "schema", "schema": {"type": "object"}}}
    user, assistant, tool_answer = body["messages"]
    assert user["role"] == "user" and user["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert tool_answer == {"role": "tool", "name": "add", "content": "2"}
    assert "max_tokens" not in translate.openai_request("generate", {"prompt": "x"})[1]  # num_predict -1: no limit
    assert translate.openai_request("generate", {"prompt": "x", "raw": True, "format": "json"})[0] == "/completions"


def test_streamed_tool_calls_come_back_whole_on_the_done_object() -> None:
    translation = translate.Translation("chat", "m", started=0.0)
    pieces = [{"index": 0, "id": "c1", "function": {"name": "add", "arguments": '{"a"'}},
              {"index": 0, "function": {"arguments": ": 1}"}}]
    for piece in pieces:
        assert translation.add({"choices": [{"delta": {"tool_calls": [piece]}}]}) == []
    translation.add({"choices": [{"delta": {}, "finish_reason": "tool_calls"}],
                     "timings": {"cache_n": 2, "prompt_n": 5, "prompt_ms": 1.5, "predicted_n": 7, "predicted_ms": 3}})
    final = translation.final(now=0.5)
    assert final["message"]["tool_calls"] == [{"id": "c1", "function": {"index": 0, "name": "add",
                                                                         "arguments": {"a": 1}}}]
    assert final["done_reason"] == "stop" and final["prompt_eval_count"] == 7 and final["eval_count"] == 7
    assert final["total_duration"] == 500_000_000 and final["prompt_eval_duration"] == 1_500_000


@needs_llama_server
def test_an_ollama_engine_gets_the_request_as_sent_and_its_metrics_reach_the_record(tiny_model: Path,
                                                                                    tmp_path: Path) -> None:
    server = OllamaServer(ServerConfig(parallel=2, ctx_per_agent=512), tiny_model, "tiny-vramcap",
                          fit_margin_mib=1024, binary=launcher(tmp_path), log_dir=tmp_path / "logs",
                          startup_timeout_s=120,
                          env={"OLLAMA_MODELS": str(tmp_path / "store"), "LLAMA_ARG_REPACK": "0"})
    with server, RecordingProxy(server.url, model=server.request_model) as proxy:
        channel = proxy.channel()
        # the client names a model the engine does not have: the proxy sends the one it serves
        answer = client(channel.base_url).chat(model="qwen2.5:14b", messages=QUESTION, stream=False,
                                               options={"num_predict": 4, "num_ctx": 512})
        parts = list(client(channel.base_url).chat(model="x", messages=QUESTION, stream=True,
                                                   options={"num_predict": 3, "num_ctx": 512}))
        assert client(channel.base_url).generate(model="x").done_reason == "load"
    assert answer.done and answer.model.startswith("tiny-vramcap") and answer.eval_count == 4
    assert parts[-1].done and parts[-1].eval_count == 3
    first, second = channel.records
    assert first.ok and first.n_out == 4 and first.engine_metrics is not None
    assert first.engine_metrics["eval_count"] == 4 and first.load_s is not None and first.load_s >= 0
    assert first.text == answer.message.content and second.n_out == 3
    assert channel.unrecorded == {"POST /api/generate": 1}


def test_an_error_line_mid_stream_fails_the_record_and_reaches_the_client() -> None:
    # tests/scripted_engine.py stands in for Ollama: no real engine sends an error line on demand
    lines = [{"model": "m", "message": {"role": "assistant", "content": "a"}, "done": False},
             {"error": "model runner has unexpectedly stopped"}]
    with ScriptedEngine(lines, ollama=True) as engine, RecordingProxy(engine.url) as proxy:
        channel = proxy.channel()
        with httpx.stream("POST", channel.base_url.removesuffix("/v1") + "/api/chat", timeout=30,
                          json={"model": "m", "messages": QUESTION}) as answer:
            got = [json.loads(line) for line in answer.iter_lines() if line]
    assert got == lines and engine.bodies[0]["stream"] is True
    (record,) = channel.records
    assert record.error_kind == "server_error" and "unexpectedly stopped" in (record.error or "")
    assert record.ttft is not None and record.n_chunks == 1


def test_text_with_characters_httpx_reads_as_line_breaks_stays_one_ndjson_line() -> None:
    # A synthesized model's random tokens produced U+0085 and U+2028 in an answer; raw in the NDJSON, the ollama
    # client's httpx iter_lines split the line there and failed with a JSONDecodeError. tests/scripted_engine.py
    # stands in for llama-server's stream here (a real one emits them only by chance), unescaped as llama-server
    # writes them: the proxy's own reading of the stream must not split there either.
    pieces = ["one\u2028two", "three\x85four", "five\u2029six"]
    events: list[dict | bytes] = [  # type: ignore[type-arg]
        json.dumps({"choices": [{"delta": {"content": piece}, "finish_reason": None}]}, ensure_ascii=False).encode()
        for piece in pieces]
    events.append({"choices": [{"delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 3}})
    with ScriptedEngine(events) as engine, RecordingProxy(engine.url) as proxy:
        channel = proxy.channel()
        parts = list(client(channel.base_url).chat(model="m", messages=QUESTION, stream=True))
    assert "".join(part.message.content for part in parts) == "".join(pieces) and parts[-1].done
    (record,) = channel.records
    assert record.ok and record.text == "".join(pieces)


def test_the_engine_kind_is_asked_once_per_engine_and_again_after_a_retarget(tiny_server: str) -> None:
    # tests/scripted_engine.py stands in for an Ollama (it answers /api/version) and for another OpenAI server
    with ScriptedEngine([], ollama=True) as ollama_like, ScriptedEngine([]) as other, \
            RecordingProxy(tiny_server) as proxy:
        assert proxy.engine_kind() == "llama-server"
        proxy.retarget(ollama_like.url)
        assert proxy.engine_kind() == "ollama"
        proxy.retarget(other.url)
        assert proxy.engine_kind() == "openai"


def test_a_dead_engine_is_ollamas_error_and_a_later_engine_is_asked_anew() -> None:
    with RecordingProxy(None) as proxy:
        channel = proxy.channel()
        with ScriptedEngine([]) as engine:
            dead = f"http://127.0.0.1:{engine.url.rsplit(':', 1)[1]}"
        proxy.retarget(dead)  # nothing listens there any more
        with pytest.raises(ollama.ResponseError) as raised:
            client(channel.base_url).chat(model="m", messages=QUESTION)
        assert raised.value.status_code == 502 and "did not answer" in raised.value.error
        (record,) = channel.records
        assert record.error_kind == "connection"


def test_another_openai_server_gets_only_the_options_openai_has() -> None:
    # tests/scripted_engine.py: an OpenAI server that is neither llama-server nor Ollama, showing what it received
    events = [{"choices": [{"index": 0, "delta": {"content": "hi"}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1}}]
    with ScriptedEngine(events) as engine, RecordingProxy(engine.url) as proxy:
        channel = proxy.channel()
        answer = client(channel.base_url).chat(model="m", messages=QUESTION,
                                               options={"num_predict": 8, "top_k": 3, "temperature": 0.1})
    assert answer.message.content == "hi" and answer.eval_count == 1 and answer.prompt_eval_count == 3
    (body,) = engine.bodies
    assert body["max_tokens"] == 8 and body["temperature"] == 0.1
    assert not {"top_k", "n_keep", "repeat_last_n", "min_p", "typical_p"} & set(body)


def test_tool_call_arguments_that_are_not_an_object_fail_as_ollama_fails_them() -> None:
    # tests/scripted_engine.py: no real engine streams broken tool call arguments on demand
    events = [{"choices": [{"index": 0, "delta": {"tool_calls": [
                  {"index": 0, "id": "c1", "function": {"name": "add", "arguments": '{"a": '}}]}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    with ScriptedEngine(events) as engine, RecordingProxy(engine.url) as proxy:
        channel = proxy.channel()
        with httpx.stream("POST", channel.base_url.removesuffix("/v1") + "/api/chat", timeout=30,
                          json={"model": "m", "messages": QUESTION}) as answer:
            lines = [json.loads(line) for line in answer.iter_lines() if line]
    assert lines[-1].keys() == {"error"} and "invalid tool call arguments for 'add'" in lines[-1]["error"]
    (record,) = channel.records
    assert record.error_kind == "protocol"
