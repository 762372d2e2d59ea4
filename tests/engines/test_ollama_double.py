"""The Ollama double follows Ollama where a capacity run can notice (issue 24, item 7): keep_alive and its
expiry, reloads on changed runner options, the llama-server request built from the request's options,
``stream: false``, and ``/api/generate`` with a prompt.

The first tests drive the double's pure functions (tests/ollama_double/options.py) against the Ollama
sources they copy; the rest start the double with the REAL llama-server on the tiny model.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_vramcap.engines.ollama import OllamaServer
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import needs_llama_server, processes_with
from tests.ollama_double import launcher
from tests.ollama_double.options import (
    FOREVER_S,
    OptionError,
    RunnerOptions,
    chat_body,
    completion_body,
    env_keep_alive,
    merged_options,
    needs_reload,
    openai_request,
    request_keep_alive,
)
from tests.ollama_double.runner import LaunchOptions, Runner
from tests.ollama_double.server import FOREVER, chat_chunks

MODEL = "tiny-vramcap"
CONFIG = ServerConfig(parallel=1, ctx_per_agent=512, n_ubatch=256)
DEADLINE_S = 30.0  # bound on every wait for the double to unload; the tiny model unloads in well under a second


# -- the pure parts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, seconds", [("5m", 300.0), ("30s", 30.0), ("1h", 3600.0), ("1h30m", 5400.0),
                                            ("0.5s", 0.5), ("250ms", 0.25), ("0", 0.0), (0, 0.0), (10, 10.0),
                                            (1.5, 1.5), (-1, FOREVER_S), ("-5m", FOREVER_S), (None, None)])
def test_keep_alive_is_read_as_api_types_duration(value: Any, seconds: float | None) -> None:
    """api/types.go Duration.UnmarshalJSON: a number is seconds, a string a Go duration, negative forever."""
    assert request_keep_alive(value) == seconds


@pytest.mark.parametrize("value, message", [("10", 'time: missing unit in duration "10"'),
                                            ("soon", 'time: invalid duration "soon"'),
                                            (True, "Unsupported type: 'bool'")])
def test_a_bad_keep_alive_is_go_s_error(value: Any, message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        request_keep_alive(value)


@pytest.mark.parametrize("env, seconds", [("", 300.0), ("10m", 600.0), ("45", 45.0), ("-1", FOREVER_S),
                                          ("nonsense", 300.0)])
def test_ollama_keep_alive_default(env: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """envconfig/config.go KeepAlive: a Go duration or whole seconds, negative forever, default 5m."""
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", env)
    assert env_keep_alive() == seconds


LOADED = RunnerOptions(num_ctx=2048, num_batch=512, num_gpu=-1, main_gpu=None, use_mmap=None, num_thread=0,
                       draft_num_predict=0)


@pytest.mark.parametrize("change, reloads", [
    ({}, False),
    ({"num_thread": 4}, True), ({"main_gpu": 0}, True), ({"use_mmap": False}, True), ({"num_ctx": 4096}, True),
    ({"num_batch": 1024}, True), ({"num_gpu": 10}, True), ({"draft_num_predict": 4}, True),
])
def test_needs_reload_compares_the_runner_options(change: dict[str, Any], reloads: bool) -> None:
    from dataclasses import replace

    assert needs_reload(LOADED, replace(LOADED, **change)) is reloads


def test_needs_reload_exceptions() -> None:
    """sched.go needsReload: num_gpu < 0 matches any loaded num_gpu; automatic num_ctx/num_batch on both sides
    keep the loaded values; an explicit one that differs does not."""
    from dataclasses import replace

    offloaded = replace(LOADED, num_gpu=99)
    assert not needs_reload(offloaded, replace(LOADED, num_gpu=-1))
    auto = replace(LOADED, num_ctx_auto=True, num_batch_auto=True)
    assert not needs_reload(auto, replace(auto, num_ctx=8192, num_batch=1024))
    assert needs_reload(auto, replace(auto, num_ctx=8192, num_ctx_auto=False))


def test_the_chat_body_is_llama_server_chat_request_from_default_options() -> None:
    """llm/llama_server.go llamaServerChatRequest over api.DefaultOptions; num_predict -1 becomes
    boundedNumPredict's 10 context windows."""
    body = chat_body([{"role": "user", "content": "hi"}], merged_options({}, {}), 512)
    assert body == {"messages": [{"role": "user", "content": "hi"}], "stream": True, "cache_prompt": True,
                    "n_predict": 5120, "n_keep": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                    "stop": None, "repeat_penalty": 1.0, "repeat_last_n": 64, "frequency_penalty": 0.0,
                    "presence_penalty": 0.0, "typical_p": 1.0, "seed": -1}


def test_request_options_override_the_model_s_and_reach_the_body() -> None:
    options = merged_options({"temperature": 0.1, "top_k": 5, "num_ctx": 1024},
                             {"temperature": 0.0, "num_predict": 7, "stop": ["\n"], "seed": 3, "min_p": 0.05,
                              "repeat_penalty": 1.2, "repeat_last_n": 32, "presence_penalty": 0.5,
                              "frequency_penalty": 0.25, "typical_p": 0.7, "num_keep": 9, "top_p": 0.5,
                              "not_an_option": 1})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = chat_body([], options, 1024, tools=tools, fmt="json", think="high")
    assert {key: body[key] for key in ("temperature", "top_k", "n_predict", "stop", "seed", "min_p", "n_keep",
                                       "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
                                       "typical_p", "top_p")} == \
        {"temperature": 0.0, "top_k": 5, "n_predict": 7, "stop": ["\n"], "seed": 3, "min_p": 0.05, "n_keep": 9,
         "repeat_penalty": 1.2, "repeat_last_n": 32, "presence_penalty": 0.5, "frequency_penalty": 0.25,
         "typical_p": 0.7, "top_p": 0.5}
    assert body["tools"] == tools and body["response_format"] == {"type": "json_object"}
    assert body["chat_template_kwargs"] == {"enable_thinking": True, "reasoning_effort": "high"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert chat_body([], options, 1024, fmt=schema, think=False)["response_format"] == \
        {"type": "json_schema", "json_schema": {"name": "schema", "schema": schema}}
    assert chat_body([], options, 1024, think=False)["chat_template_kwargs"] == {"enable_thinking": False}
    assert completion_body("x", options, 1024, fmt="json")["grammar"].lstrip().startswith("root   ::= object")


@pytest.mark.parametrize("options, message", [({"num_ctx": "big"}, 'option "num_ctx" must be of type integer'),
                                              ({"stop": "x"}, 'option "stop" must be of type array'),
                                              ({"temperature": True}, 'option "temperature" must be of type float32')])
def test_a_wrongly_typed_option_is_options_from_map_s_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        merged_options({}, options)


def test_openai_requests_map_as_openai_go_does() -> None:
    options, fmt, think = openai_request({"stop": "END", "max_tokens": 9, "seed": 1, "presence_penalty": 0.5,
                                          "response_format": {"type": "json_object"}, "reasoning_effort": "minimal"})
    assert options == {"stop": ["END"], "num_predict": 9, "temperature": 1.0, "seed": 1, "presence_penalty": 0.5,
                       "top_p": 1.0}
    assert (fmt, think) == ("json", "low")
    schema = {"type": "object"}
    _, fmt, think = openai_request({"stop": ["a", 1], "response_format": {"type": "json_schema",
                                                                           "json_schema": {"schema": schema}}})
    assert (fmt, think) == (schema, None)


def test_tool_calls_are_accumulated_onto_the_final_chunk_as_objects() -> None:
    """llm/llama_server.go Chat + accumulatedToolCalls: the streamed pieces of a call are joined, and only the
    done chunk carries the calls, arguments parsed."""
    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    def call(index: int, **function: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, "id": f"call_{index}" if "name" in function else "",
                                "type": "function", "function": function}]}

    events = [event({"role": "assistant", "content": None}), event(call(0, name="get_weather", arguments='{"ci')),
              event(call(0, arguments='ty": "Paris"}')), event(call(1, name="now", arguments="")),
              event({}, "tool_calls", timings={"prompt_n": 5, "cache_n": 2, "predicted_n": 11})]
    chunks = list(chat_chunks(events, MODEL, time.monotonic(), 0.0))
    assert len(chunks) == 1  # no content: nothing streams before the done chunk
    done = chunks[0]
    assert done["done"] is True and done["done_reason"] == "stop"
    assert done["message"]["tool_calls"] == [
        {"id": "call_0", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_1", "function": {"index": 1, "name": "now", "arguments": {}}}]
    assert (done["prompt_eval_count"], done["eval_count"]) == (7, 11)


def test_runner_flags_for_the_new_reload_keys_in_ollama_s_order() -> None:
    """llm/llama_server.go startLlamaServer: use_mmap false is --load-mode none (appendLoadModeArgs, before the
    KV cache type), then the batch, -ngl, -t for an explicit num_thread, and main_gpu (appendMainGPUArgs)."""
    options = LaunchOptions(num_ctx=512, num_parallel=2, num_batch=256, num_gpu=0, kv_cache_type="q8_0",
                            main_gpu=1, use_mmap=False, num_thread=3)
    argv = " ".join(Runner("llama-server", "m.gguf", options, 8080).argv())
    assert argv.endswith("--load-mode none --cache-type-k q8_0 --cache-type-v q8_0 --flash-attn auto "
                         "-b 256 -ub 256 -ngl 0 -t 3 --split-mode none --main-gpu 1")
    plain = " ".join(Runner("llama-server", "m.gguf", LaunchOptions(512, 1, 512), 8080).argv())
    assert "--load-mode" not in plain and " -t " not in plain and "--main-gpu" not in plain


# -- against the double and a real llama-server --------------------------------------------------------
def start_double(tiny_model: Path, directory: Path, **env: str) -> OllamaServer:
    """``ollama serve`` (the double) with the tiny model created and preloaded (keep_alive -1, as vramcap does).

    llama-server inherits LLAMA_ARG_REPACK=0 (CPU builds crash repacking on AMX CPUs) and LLAMA_ARG_THREADS=1:
    on a busy 2-core machine its default of one thread per core spins against the other load (4 s for six
    tokens of the tiny model, 20 ms with one thread). An environment variable, not a flag, so that the
    runner's command line stays the one Ollama builds."""
    server = OllamaServer(CONFIG, tiny_model, MODEL, fit_margin_mib=1024, binary=launcher(directory),
                          log_dir=directory / "logs", startup_timeout_s=120,
                          env={"OLLAMA_MODELS": str(directory / "store"), "LLAMA_ARG_REPACK": "0",
                               "LLAMA_ARG_THREADS": "1", **env})
    return server.start()


@pytest.fixture
def double(tiny_model: Path, tmp_path: Path) -> Iterator[OllamaServer]:
    server = start_double(tiny_model, tmp_path, OLLAMA_KEEP_ALIVE="2m")
    try:
        yield server
    finally:
        server.stop()
    assert processes_with(str(tmp_path)) == []


@pytest.fixture(scope="module")
def shared(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    """One double for the tests that only send requests that keep the loaded runner."""
    directory = tmp_path_factory.mktemp("ollama-double")
    server = start_double(tiny_model, directory)
    try:
        yield server
    finally:
        server.stop()
    assert processes_with(str(directory)) == []


def runners(directory: Path) -> list[int]:
    """The llama-server processes the double started for this test (the model blob lives under ``directory``)."""
    return [pid for pid in processes_with(str(directory))
            if b"llama-server" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def chat(server: OllamaServer, **body: Any) -> dict[str, Any]:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False, **body}
    response = httpx.post(f"{server.url}/api/chat", json=request, timeout=120)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert isinstance(payload, dict)
    return payload


def ps(server: OllamaServer) -> list[dict[str, Any]]:
    models = httpx.get(f"{server.url}/api/ps", timeout=30).json()["models"]
    assert isinstance(models, list)
    return models


def seconds_left(server: OllamaServer) -> float:
    """How far /api/ps's expires_at (RFC 3339) lies ahead of now."""
    (entry,) = ps(server)
    expires = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00"))
    return (expires - datetime.now(timezone.utc)).total_seconds()


def log_text(server: OllamaServer) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")


@needs_llama_server
def test_expires_at_moves_with_keep_alive(double: OllamaServer) -> None:
    """sched.go: a request's keep_alive becomes the runner's session duration and the idle timer's span;
    a request without one leaves it; /api/ps shows the expiry."""
    assert ps(double)[0]["expires_at"] == FOREVER  # vramcap preloads with keep_alive -1
    chat(double, keep_alive="10m", options={"num_predict": 1})
    assert 590 < seconds_left(double) <= 600
    chat(double, keep_alive=30, options={"num_predict": 1})
    assert 20 < seconds_left(double) <= 30
    chat(double, options={"num_predict": 1})  # no keep_alive: the runner keeps 30 s
    assert 20 < seconds_left(double) <= 30
    chat(double, keep_alive=-1, options={"num_predict": 1})
    assert ps(double)[0]["expires_at"] == FOREVER


@needs_llama_server
def test_an_expired_model_is_unloaded_and_the_next_request_loads_it_again(double: OllamaServer,
                                                                           tmp_path: Path) -> None:
    (first,) = runners(tmp_path)
    warm = chat(double, keep_alive="1s", options={"num_predict": 1})
    deadline = time.monotonic() + DEADLINE_S
    while ps(double) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ps(double) == [], "the model outlived its 1 s keep_alive"
    assert runners(tmp_path) == []  # its llama-server stopped
    assert "timer expired, expiring to unload" in log_text(double)

    again = chat(double, options={"num_predict": 1})  # no keep_alive: OLLAMA_KEEP_ALIVE (2m) for the new runner
    (second,) = runners(tmp_path)
    assert second != first
    assert again["load_duration"] > warm["load_duration"] > 0  # this one waited for a llama-server to start
    assert 110 < seconds_left(double) <= 120

    chat(double, keep_alive=0, options={"num_predict": 1})  # 0: unloaded as soon as the request is done
    deadline = time.monotonic() + DEADLINE_S
    while runners(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runners(tmp_path) == [] and ps(double) == []


@needs_llama_server
def test_a_request_with_another_num_thread_or_main_gpu_reloads(double: OllamaServer, tmp_path: Path) -> None:
    """sched.go needsReload compares api.Runner; llm/llama_server.go passes num_thread as -t and main_gpu as
    --split-mode none --main-gpu."""
    (first,) = runners(tmp_path)
    chat(double, options={"num_predict": 1, "num_thread": 1})
    (second,) = runners(tmp_path)
    assert second != first
    starts = [line for line in log_text(double).splitlines() if 'msg="starting llama-server"' in line]
    assert len(starts) == 2 and " -t 1" in starts[-1] and " -t " not in starts[0]
    assert "msg=reloading" in log_text(double)

    chat(double, options={"num_predict": 1, "num_thread": 1})  # the same options: the same runner
    assert runners(tmp_path) == [second]

    chat(double, options={"num_predict": 1, "num_thread": 1, "main_gpu": 0})
    (third,) = runners(tmp_path)
    assert third != second
    starts = [line for line in log_text(double).splitlines() if 'msg="starting llama-server"' in line]
    assert len(starts) == 3 and "--split-mode none --main-gpu 0" in starts[-1]


@needs_llama_server
def test_stop_strings_reach_the_runner(shared: OllamaServer) -> None:
    """A greedy answer's own first character as a stop string ends the same answer before its first token."""
    greedy = {"num_predict": 8, "temperature": 0, "seed": 1}
    free = chat(shared, options=greedy)
    assert free["done_reason"] == "length" and free["eval_count"] == 8
    stop = free["message"]["content"][0]
    stopped = chat(shared, options={**greedy, "stop": [stop]})
    assert stopped["message"]["content"] == "" and stopped["done_reason"] == "stop"
    assert stopped["eval_count"] < 8
    assert f"stop={json.dumps([stop])}" in log_text(shared)
    # /v1/chat/completions passes stop on as well (openai/openai.go: a string is a one-element list)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8,
            "temperature": 0, "seed": 1, "stop": stop}
    with httpx.stream("POST", f"{shared.url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        events = [json.loads(line[5:]) for line in response.iter_lines()
                  if line.startswith("data:") and line != "data: [DONE]"]
    text = "".join(choice["delta"].get("content") or "" for event in events for choice in event["choices"])
    assert text == "" and events[-1]["choices"][0]["finish_reason"] == "stop"


@needs_llama_server
def test_tools_pass_through(shared: OllamaServer) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                               "parameters": {"type": "object", "required": ["city"],
                                                              "properties": {"city": {"type": "string"}}}}}]
    answer = chat(shared, tools=tools, options={"num_predict": 4})
    assert answer["done"] is True and answer["eval_count"] > 0
    assert "tools=1" in log_text(shared)  # the double's log of the runner request (Ollama's debug line)


@needs_llama_server
def test_stream_false_is_one_object_with_all_the_content(shared: OllamaServer) -> None:
    """routes.go writeChatResponse: the streamed chunks' content joined into the final object."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 6, "temperature": 0, "seed": 1}}
    with httpx.stream("POST", f"{shared.url}/api/chat", json=body, timeout=120) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) >= 2 and lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])
    streamed = "".join(line["message"]["content"] for line in lines)

    response = httpx.post(f"{shared.url}/api/chat", json={**body, "stream": False}, timeout=120)
    assert response.headers["content-type"].startswith("application/json")
    whole = response.json()
    assert whole["done"] is True and whole["done_reason"] == "length" and whole["eval_count"] == 6
    assert whole["message"] == {"role": "assistant", "content": streamed} and streamed


@needs_llama_server
def test_generate_with_a_prompt_streams_generate_responses(shared: OllamaServer) -> None:
    body = {"model": MODEL, "prompt": "hello", "options": {"num_predict": 5, "temperature": 0, "seed": 1}}
    with httpx.stream("POST", f"{shared.url}/api/generate", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *pieces, done = lines
    assert pieces and all(piece["done"] is False and piece["response"] for piece in pieces)
    assert done["done"] is True and done["done_reason"] == "length" and done["eval_count"] == 5
    assert done["prompt_eval_count"] > 0 and done["load_duration"] > 0 and "context" not in done

    whole = httpx.post(f"{shared.url}/api/generate", json={**body, "stream": False}, timeout=120).json()
    assert whole["response"] == "".join(piece["response"] for piece in lines) and whole["eval_count"] == 5

    raw = httpx.post(f"{shared.url}/api/generate", json={**body, "raw": True, "stream": False}, timeout=120).json()
    assert raw["done"] is True and raw["eval_count"] == 5 and raw["response"]
    # raw prompts go to /completion as they are: fewer prompt tokens than the chat-templated one
    assert raw["prompt_eval_count"] < whole["prompt_eval_count"]


# -- several models on one Ollama --------------------------------------------------------------------------
def start_pair(tiny_model: Path, embed_model: Path, directory: Path, max_loaded: int) -> tuple[OllamaServer,
                                                                                               OllamaServer]:
    """A chat model and an embedding model on one double, loaded one after the other as vramcap loads them."""
    env = {"OLLAMA_MODELS": str(directory / "store"), "LLAMA_ARG_REPACK": "0", "LLAMA_ARG_THREADS": "1",
           "OLLAMA_MAX_LOADED_MODELS": str(max_loaded)}
    chat_model = OllamaServer(CONFIG, tiny_model, "chat-vramcap", fit_margin_mib=1024, binary=launcher(directory),
                              log_dir=directory / "logs", startup_timeout_s=120, env=env)
    embed = OllamaServer(CONFIG, embed_model, "embed-vramcap", fit_margin_mib=1024, beside=chat_model)
    chat_model.start()
    try:
        embed.start()
    except BaseException:
        chat_model.stop()
        raise
    return chat_model, embed


@needs_llama_server
def test_two_models_stay_loaded_side_by_side(tiny_model: Path, tiny_embed_model: Path, tmp_path: Path) -> None:
    from pytest_vramcap.report.verdicts import resident_verdict

    chat_model, embed = start_pair(tiny_model, tiny_embed_model, tmp_path, max_loaded=2)
    try:
        assert len(runners(tmp_path)) == 2 and chat_model.pid != embed.pid and {chat_model.pid, embed.pid} <= set(
            runners(tmp_path))
        answer = httpx.post(f"{embed.url}/api/embed", json={"model": "embed-vramcap", "input": ["one", "two"]},
                            timeout=60).json()
        assert len(answer["embeddings"]) == 2 and answer["prompt_eval_count"] > 0 and answer["load_duration"] < 1e9
        listed = {entry["name"] for entry in httpx.get(f"{embed.url}/api/ps", timeout=10).json()["models"]}
        assert listed == {"chat-vramcap:latest", "embed-vramcap:latest"}
        chat_evidence, embed_evidence = chat_model.evidence(), embed.evidence()
        assert resident_verdict(chat_evidence).outcome == "pass" and resident_verdict(embed_evidence).outcome == "pass"
        # Each model judges its own runner's lines of the shared log: the 2-layer embedding model's, the chat's.
        assert embed_evidence.log is not None and chat_evidence.log is not None
        assert embed_evidence.log.model_info["n_layer"] == 2 and chat_evidence.log.model_info["n_layer"] == 8
        assert embed.describe()["runner_model_file"] != chat_model.describe()["runner_model_file"]
        runner_lines = [line for line in (tmp_path / "logs").glob("ollama-*.log").__next__().read_text().splitlines()
                        if "starting llama-server" in line]
        assert len(runner_lines) == 2 and "--embedding" in runner_lines[1] and " -np 1 " in runner_lines[1]
    finally:
        embed.stop()
        chat_model.stop()
    assert processes_with(str(tmp_path)) == []


@needs_llama_server
def test_a_second_model_evicts_the_first_when_ollama_keeps_one(tiny_model: Path, tiny_embed_model: Path,
                                                               tmp_path: Path) -> None:
    """OLLAMA_MAX_LOADED_MODELS=1 (a user's setting): loading the embedding model unloads the chat model
    (sched.go findRunnerToUnload), and the chat model's resident verdict names it."""
    from pytest_vramcap.report.verdicts import resident_verdict

    chat_model, embed = start_pair(tiny_model, tiny_embed_model, tmp_path, max_loaded=1)
    try:
        verdict = resident_verdict(chat_model.evidence())
        assert verdict.outcome == "fail"
        assert verdict.evidence == ("Ollama no longer lists chat-vramcap in /api/ps (unloaded or reloading)",)
        assert resident_verdict(embed.evidence()).outcome == "pass"
        assert len(runners(tmp_path)) == 1
    finally:
        embed.stop()
        chat_model.stop()
    assert processes_with(str(tmp_path)) == []
