"""Ollama's request options and keep_alive, and the llama-server bodies it builds from them.

Copied from ollama/ollama fb3076099: api/types.go (DefaultOptions, Options.FromMap, Runner,
Duration.UnmarshalJSON, ThinkValue.Bool), envconfig/config.go (KeepAlive), server/sched.go
(needsReload), llm/llama_server.go (boundedNumPredict, llamaServerChatRequest,
llamaServerChatMessage, llamaServerChatResponseFormat, llamaServerCompletionRequest,
accumulatedToolCalls) and openai/openai.go (FromChatRequest, thinkFromReasoningEffort).
Pure functions: the unit tests drive them without a llama-server.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any

from .runner import log

FOREVER_S = math.inf  # api/types.go: a negative keep_alive is time.Duration(math.MaxInt64)
DEFAULT_KEEP_ALIVE_S = 300.0  # envconfig/config.go KeepAlive: 5 minutes
# llm/llama_server.go openEndedGenerationContextMultiplier
OPEN_ENDED_CONTEXT_MULTIPLIER = 10

# api/types.go Options and Runner, by the JSON names Options.FromMap matches and the Go kind it converts to.
INT_OPTIONS = {"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "draft_num_predict", "num_keep", "seed",
               "num_predict", "top_k", "repeat_last_n"}
FLOAT_OPTIONS = {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                 "frequency_penalty"}
BOOL_OPTIONS = {"use_mmap"}
LIST_OPTIONS = {"stop"}

# llm/llama_server.go grammarJSON: what /completion gets for format "json".
GRAMMAR_JSON = r'''
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
         string ":" ws value
    ("," ws string ":" ws value)*
  )? ws "}"
array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? ws "]"
string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]) # escapes
  )* "\""
number ::= ("-"? ([0-9] | [1-9] [0-9]*)) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?
# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= ([ \t\n] ws)?
'''


class OptionError(ValueError):
    """An option or keep_alive Ollama refuses; the message is Ollama's."""


# -- keep_alive ------------------------------------------------------------------------------------
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds ("1h30m", "-5m", "0.5s", "0"); its error messages."""
    rest, sign = text, 1.0
    if rest[:1] in ("+", "-"):
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise OptionError(f'time: invalid duration "{text}"')
    total, at = 0.0, 0
    while at < len(rest):
        match = _GO_PART.match(rest, at)
        if match is None:
            if re.fullmatch(r"[\d.]+", rest[at:]):
                raise OptionError(f'time: missing unit in duration "{text}"')
            raise OptionError(f'time: invalid duration "{text}"')
        total += float(match[1]) * _GO_UNITS[match[2]]
        at = match.end()
    return sign * total


def request_keep_alive(value: Any) -> float | None:
    """api/types.go Duration.UnmarshalJSON: a number is seconds, a string a Go duration, negative is forever;
    None (absent or null) leaves the runner's session duration as it is (server/sched.go useLoadedRunner)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        go_type = {bool: "bool", dict: "map[string]interface {}", list: "[]interface {}"}.get(type(value), "")
        raise OptionError(f"Unsupported type: '{go_type or type(value).__name__}'")
    seconds = parse_go_duration(value) if isinstance(value, str) else float(value)
    return FOREVER_S if seconds < 0 else seconds


def env_keep_alive() -> float:
    """envconfig/config.go KeepAlive: OLLAMA_KEEP_ALIVE as a Go duration or whole seconds, default 5m."""
    raw = os.environ.get("OLLAMA_KEEP_ALIVE", "").strip().strip("'\"")
    seconds = DEFAULT_KEEP_ALIVE_S
    if raw:
        try:
            seconds = parse_go_duration(raw)
        except OptionError:
            try:
                seconds = float(int(raw))
            except ValueError:
                pass
    return FOREVER_S if seconds < 0 else seconds


# -- options ---------------------------------------------------------------------------------------
def default_options() -> dict[str, Any]:
    """api/types.go DefaultOptions, by JSON name. num_ctx 0: the scheduler picks it (server/routes.go
    modelOptions falls back to the server's default context); stop None is Go's nil slice."""
    return {"num_predict": -1, "num_keep": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
            "typical_p": 1.0, "repeat_last_n": 64, "repeat_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "seed": -1, "stop": None,
            "num_ctx": 0, "num_batch": 512, "num_gpu": -1, "main_gpu": None, "use_mmap": None, "num_thread": 0,
            "draft_num_predict": 4}


def from_map(options: dict[str, Any], given: dict[str, Any]) -> None:
    """api/types.go Options.FromMap: an unknown key is logged and skipped, a null one ignored, a value of the
    wrong JSON type refused with Ollama's message."""
    for key, value in given.items():
        if key not in INT_OPTIONS | FLOAT_OPTIONS | BOOL_OPTIONS | LIST_OPTIONS:
            log(f'msg="invalid option provided" option={key}', level="WARN")
            continue
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in INT_OPTIONS:
            if not number:
                raise OptionError(f'option "{key}" must be of type integer')
            options[key] = int(value)  # Go: float64 from JSON, truncated by SetInt(int64(t))
        elif key in FLOAT_OPTIONS:
            if not number:
                raise OptionError(f'option "{key}" must be of type float32')
            options[key] = float(value)
        elif key in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise OptionError(f'option "{key}" must be of type boolean')
            options[key] = value
        else:
            if not isinstance(value, list):
                raise OptionError(f'option "{key}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise OptionError(f'option "{key}" must be of an array of strings')
            options[key] = list(value)


def merged_options(model_parameters: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """server/routes.go modelOptions: DefaultOptions, then the model's parameters, then the request's; with no
    draft model, draft_num_predict is 0 unless one of them set it (the double has no draft models)."""
    options = default_options()
    from_map(options, model_parameters)
    from_map(options, request)
    if "draft_num_predict" not in model_parameters and "draft_num_predict" not in request:
        options["draft_num_predict"] = 0
    return options


@dataclass(frozen=True)
class RunnerOptions:
    """api/types.go Runner: the options fixed when a model loads; any difference is a reload."""

    num_ctx: int
    num_batch: int
    num_gpu: int
    main_gpu: int | None
    use_mmap: bool | None
    num_thread: int
    draft_num_predict: int
    num_ctx_auto: bool = False  # server/routes.go usesAutomaticNumCtx: chosen by the server, not asked for
    num_batch_auto: bool = False  # server/routes.go usesAutomaticNumBatch


def needs_reload(loaded: RunnerOptions, wanted: RunnerOptions) -> bool:
    """server/sched.go needsReload: reflect.DeepEqual of the loaded and requested api.Runner, after Ollama's
    exceptions: an automatic num_ctx or num_batch on both sides keeps the loaded one, and a negative num_gpu
    ("decide for me") matches any. (useMMapAuto never applies: the double never turns mmap off itself.)"""
    existing, new = loaded, wanted
    if existing.num_ctx_auto and new.num_ctx_auto:
        new = replace(new, num_ctx=existing.num_ctx)
    if existing.num_batch_auto and new.num_batch_auto:
        new = replace(new, num_batch=existing.num_batch)
    if new.num_gpu < 0:
        existing, new = replace(existing, num_gpu=-1), replace(new, num_gpu=-1)
    flags = {"num_ctx_auto": False, "num_batch_auto": False}
    return replace(existing, **flags) != replace(new, **flags)


def bounded_num_predict(num_predict: int, num_ctx: int) -> int:
    """llm/llama_server.go boundedNumPredict: an open-ended (-1) or huge num_predict becomes 10 context windows."""
    if num_ctx <= 0:
        return num_predict
    limit = OPEN_ENDED_CONTEXT_MULTIPLIER * num_ctx
    return limit if num_predict < 0 or num_predict > limit else num_predict


# -- llama-server bodies ---------------------------------------------------------------------------
def think_kwargs(think: Any) -> dict[str, Any] | None:
    """llm/llama_server.go llamaServerChatTemplateKwargs with api/types.go ThinkValue.Bool."""
    if think is None:
        return None
    enabled = think if isinstance(think, bool) else think in ("high", "medium", "low", "max")
    kwargs: dict[str, Any] = {"enable_thinking": enabled}
    if isinstance(think, str) and think:
        kwargs["reasoning_effort"] = think
    return kwargs


def response_format(fmt: Any) -> dict[str, Any] | None:
    """llm/llama_server.go llamaServerChatResponseFormat: "json" -> json_object, a schema -> json_schema."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if not isinstance(fmt, dict):
        raise OptionError(f'invalid format: {json.dumps(fmt)!r}; expected "json" or a valid JSON Schema object')
    return {"type": "json_schema", "json_schema": {"name": "schema", "schema": fmt}}


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """llm/llama_server.go llamaServerChatMessage for text messages: tool_name becomes name, and a tool call's
    arguments object becomes the JSON string the OpenAI format wants (llamaServerChatToolCalls)."""
    converted: dict[str, Any] = {"role": message.get("role", "")}
    if message.get("tool_call_id"):
        converted["tool_call_id"] = message["tool_call_id"]
    if message.get("tool_name"):
        converted["name"] = message["tool_name"]
    calls = message.get("tool_calls") or []
    if calls:
        converted["tool_calls"] = [
            {**({"id": call["id"]} if call.get("id") else {}), "index": (call.get("function") or {}).get("index", 0),
             "type": "function", "function": {"name": (call.get("function") or {}).get("name", ""),
                                              "arguments": json.dumps((call.get("function") or {}).get("arguments"))}}
            for call in calls]
    converted["content"] = message.get("content", "")
    return converted


def sampling(options: dict[str, Any], num_ctx: int) -> dict[str, Any]:
    """The sampling fields both llama-server bodies of llm/llama_server.go carry, from the merged options."""
    return {"n_predict": bounded_num_predict(options["num_predict"], num_ctx), "n_keep": options["num_keep"],
            **{key: options[key] for key in ("temperature", "top_k", "top_p", "min_p", "stop", "repeat_penalty",
                                              "repeat_last_n", "frequency_penalty", "presence_penalty", "typical_p",
                                              "seed")}}


def chat_body(messages: list[dict[str, Any]], options: dict[str, Any], num_ctx: int, *, tools: Any = None,
              fmt: Any = None, think: Any = None) -> dict[str, Any]:
    """llm/llama_server.go Chat + llamaServerChatRequest: the /v1/chat/completions body llama-server gets."""
    body: dict[str, Any] = {
        "messages": messages, "stream": True, "cache_prompt": True, **sampling(options, num_ctx)}
    if tools:
        body["tools"] = tools
    if (kwargs := think_kwargs(think)) is not None:
        body["chat_template_kwargs"] = kwargs
    if (rf := response_format(fmt)) is not None:
        body["response_format"] = rf
    return body


def completion_body(prompt: str, options: dict[str, Any], num_ctx: int, fmt: Any = None) -> dict[str, Any]:
    """llm/llama_server.go Completion + llamaServerCompletionRequest: the /completion body (omitempty fields
    left out when zero, as encoding/json does)."""
    body: dict[str, Any] = {
        "prompt": prompt, "stream": True, "cache_prompt": True, **sampling(options, num_ctx)}
    for key in ("n_predict", "n_keep", "stop", "typical_p"):
        if not body[key]:
            del body[key]
    if fmt == "json":
        body["grammar"] = GRAMMAR_JSON
    elif isinstance(fmt, dict):
        body["json_schema"] = fmt
    elif fmt not in (None, ""):
        raise OptionError(f'invalid format: {json.dumps(fmt)!r}; expected "json" or a valid JSON Schema object')
    return body


def tool_calls(accumulated: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    """llm/llama_server.go accumulatedToolCalls: the streamed pieces of each call joined, by index, with the
    arguments parsed into an object (api.ToolCall)."""
    calls = []
    for index in sorted(accumulated):
        acc = accumulated[index]
        arguments: Any = {}
        if acc["arguments"].strip():
            try:
                arguments = json.loads(acc["arguments"])
            except ValueError as exc:
                raise OptionError(f'llama-server returned invalid tool call arguments for "{acc["name"]}": '
                                  f"{exc}") from None
        call: dict[str, Any] = {"function": {"index": index, "name": acc["name"], "arguments": arguments}}
        if acc["id"]:
            call = {"id": acc["id"], **call}
        calls.append(call)
    return calls


def openai_request(body: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """openai/openai.go FromChatRequest: the options, format and think of an OpenAI chat request (temperature
    and top_p default to 1.0, max_tokens is num_predict, stop a string or a list)."""
    options: dict[str, Any] = {}
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        options["stop"] = [item for item in stop if isinstance(item, str)]
    if body.get("max_tokens") is not None:
        options["num_predict"] = body["max_tokens"]
    options["temperature"] = body["temperature"] if body.get("temperature") is not None else 1.0
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        if body.get(key) is not None:
            options[key] = body[key]
    options["top_p"] = body["top_p"] if body.get("top_p") is not None else 1.0
    fmt: Any = None
    rf = body.get("response_format")
    if isinstance(rf, dict):
        kind = str(rf.get("type", "")).strip().lower()
        if kind == "json_object":
            fmt = "json"
        elif kind == "json_schema" and isinstance(rf.get("json_schema"), dict):
            fmt = rf["json_schema"].get("schema")
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort", "") if isinstance(reasoning, dict) else body.get("reasoning_effort") or ""
    return options, fmt, think_from_effort(str(effort))


def think_from_effort(effort: str) -> Any:
    """openai/openai.go thinkFromReasoningEffort."""
    if effort == "":
        return None
    if effort == "none":
        return False
    if effort in ("low", "medium", "high", "max", "minimal", "xhigh", "ultra"):
        return {"minimal": "low", "xhigh": "max", "ultra": "max"}.get(effort, effort)
    raise OptionError(f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", "xhigh", '
                      f'"ultra", "max", or "none")')
