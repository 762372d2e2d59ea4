"""Ollama's native API (``/api/chat``, ``/api/generate``) on an engine that speaks only OpenAI's: no I/O here.

The proxy serves Ollama's routes for every engine, so that an app written with
ollama-python or langchain-ollama runs as written on the embedded llama-server too.
An Ollama engine gets the request as it came; any other gets it translated the way
Ollama's own runner translates it for llama-server (ollama/ollama fb3076099,
llm/llama_server.go: ``llamaServerChatRequest`` builds the ``/v1/chat/completions``
body, ``Chat`` turns the stream back into ``api.ChatResponse`` objects), and the answer
is written in Ollama's shapes (api/types.go; server/routes.go ``writeChatResponse`` for
a client that did not stream).

What differs from Ollama, and why:

* ``num_predict`` below 0 (Ollama's default, "until a stop condition") sends no limit:
  Ollama bounds it at 10 x its runner's context (``boundedNumPredict``), which the
  proxy does not know; llama-server stops at its slot's context either way.
* ``/api/generate`` without ``raw`` is sent as a chat of the system and the prompt
  (Ollama renders the model's template itself and calls ``/completion``; llama-server
  applies the same template to the chat); ``raw`` goes to ``/v1/completions``. The
  final answer carries no ``context`` (Ollama tokenizes prompt and answer again for it).
* The runner options (``num_ctx``, ``num_batch``, ``num_gpu``...) and ``keep_alive``
  cannot reach a server that was started already: they are recorded, and the
  ``client_options`` verdict compares them with the plan.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = ["API_VERSION", "DEFAULT_OPTIONS", "FOREVER", "RUNNER_OPTIONS", "NativeAnswer", "OllamaRoute",
           "Translation", "client_options", "engine_model", "is_load_request", "keep_alive_s", "load_answer",
           "model_entry",
           "openai_request", "ps_answer", "show_answer"]

OllamaRoute = Literal["chat", "generate"]

API_VERSION = "0.33.0"
"""The Ollama whose API the proxy answers in (``/api/version``): the source it follows."""

FOREVER = "2318-11-24T00:00:00Z"
"""``expires_at`` of a model that never unloads (Ollama's for a keep_alive of -1): llama-server's case."""

DEFAULT_OPTIONS: Mapping[str, Any] = {
    "num_predict": -1, "num_keep": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0,
    "repeat_last_n": 64, "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": -1,
}
"""api/types.go ``DefaultOptions``: the sampling options every runner request carries unless the client set them."""

RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
"""api.Runner's options: a loaded model whose values differ is reloaded (server/sched.go ``needsReload``)."""

# llamaServerChatRequest: Ollama's option -> llama-server's field (num_predict is handled apart)
_SAMPLING = {"num_keep": "n_keep", "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
             "stop": "stop", "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
             "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
             "typical_p": "typical_p", "seed": "seed"}


def _as_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: a client's or engine's field read defensively."""
    return value if isinstance(value, dict) else {}


_OPENAI_FIELDS = frozenset({"temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty"})


def now_iso() -> str:
    """``created_at`` as Go writes a UTC time.Time (RFC 3339 with fractional seconds)."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+|[-+]?0")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_s(value: Any) -> float | None:
    """A ``keep_alive`` in seconds as Ollama reads it (api/types.go Duration.UnmarshalJSON: a number is seconds, a
    string goes to Go's time.ParseDuration: ``"5m"``, ``"1h30m"``, one optional sign, no spaces); below 0 is
    forever (``inf``); None where Ollama refuses it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in _DURATION_PART.findall(value))
        seconds = -seconds if value.startswith("-") else seconds
    else:
        return None
    return float("inf") if seconds < 0 else seconds


def is_load_request(route: OllamaRoute, body: Mapping[str, Any]) -> bool:
    """An empty prompt (generate) or no messages (chat) only loads or unloads the model (server/routes.go)."""
    return not body.get("prompt") if route == "generate" else not body.get("messages")


def client_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a native request asked of the engine beyond its prompt: its ``options`` and ``keep_alive``."""
    options = body.get("options")
    asked = dict(options) if isinstance(options, dict) else {}
    if body.get("keep_alive") is not None:
        asked["keep_alive"] = body["keep_alive"]
    return asked


def openai_request(route: OllamaRoute, body: Mapping[str, Any], *,
                   llama_server: bool = True) -> tuple[str, dict[str, Any]]:
    """The OpenAI endpoint (``/chat/completions`` or ``/completions``) and body for a native request, as
    ``llamaServerChatRequest`` builds it for llama-server: api.DefaultOptions under the client's options. Another
    OpenAI server gets only the options the client set that OpenAI's API has (a strict one refuses the others)."""
    asked = _as_object(body.get("options"))
    options = {**DEFAULT_OPTIONS, **asked} if llama_server else asked
    request: dict[str, Any] = {}  # cache_prompt (Ollama: always on) is left to the proxy's request defaults
    for option, field in _SAMPLING.items():
        if options.get(option) is not None and (llama_server or field in _OPENAI_FIELDS):
            request[field] = options[option]
    if isinstance(options.get("num_predict"), int) and options["num_predict"] >= 0:
        request["max_tokens"] = options["num_predict"]
    if isinstance(body.get("model"), str):
        request["model"] = body["model"]
    if route == "generate" and body.get("raw"):
        request["prompt"] = body.get("prompt") or ""
        return "/completions", request
    if route == "generate":
        messages = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + [
            {"role": "user", "content": body.get("prompt") or "", "images": body.get("images") or []}]
    else:
        messages = [message for message in body.get("messages") or [] if isinstance(message, dict)]
    request["messages"] = [_openai_message(message) for message in messages]
    if body.get("tools"):
        request["tools"] = body["tools"]
    think = body.get("think")
    if think is not None:  # llamaServerChatTemplateKwargs: a level ("high") also means thinking on
        request["chat_template_kwargs"] = {"enable_thinking": bool(think),
                                           **({"reasoning_effort": think} if isinstance(think, str) and think
                                              else {})}
    response_format = _response_format(body.get("format"))
    if response_format is not None:
        request["response_format"] = response_format
    return "/chat/completions", request


def _openai_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """llamaServerChatMessage: tool fields renamed, tool call arguments as JSON text, images as data URLs."""
    converted: dict[str, Any] = {"role": str(message.get("role", "user")).lower()}
    if message.get("tool_call_id"):
        converted["tool_call_id"] = message["tool_call_id"]
    if message.get("tool_name"):
        converted["name"] = message["tool_name"]
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        converted["tool_calls"] = [_openai_tool_call(call) for call in calls if isinstance(call, dict)]
    content = message.get("content") or ""
    images = [image for image in message.get("images") or [] if isinstance(image, str)]
    if not images:
        converted["content"] = content
        return converted
    parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    parts += [{"type": "image_url", "image_url": {"url": f"data:{_image_type(image)};base64,{image}"}}
              for image in images]
    converted["content"] = parts
    return converted


def _openai_tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """llamaServerChatToolCalls: Ollama's tool call (arguments an object) as OpenAI's (arguments JSON text)."""
    function = _as_object(call.get("function"))
    arguments = function.get("arguments", {})
    return {**({"id": call["id"]} if call.get("id") else {}), "index": function.get("index", 0), "type": "function",
            "function": {"name": function.get("name", ""),
                         "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}}


def _image_type(data: str) -> str:
    """The image's MIME type from its first bytes (http.DetectContentType's image signatures); JPEG otherwise,
    as llamaServerChatMediaPart falls back."""
    head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4), validate=False)
    for magic, kind in ((b"\x89PNG", "image/png"), (b"GIF8", "image/gif"), (b"RIFF", "image/webp"),
                        (b"BM", "image/bmp")):
        if head.startswith(magic):
            return kind
    return "image/jpeg"


def _response_format(format_: Any) -> dict[str, Any] | None:
    """llamaServerChatResponseFormat: ``"json"`` -> json_object, a schema -> json_schema, nothing else sent."""
    if format_ == "json":
        return {"type": "json_object"}
    if isinstance(format_, dict):
        return {"type": "json_schema", "json_schema": {"name": "schema", "schema": format_}}
    return None


class Translation:
    """An OpenAI stream's chunks (:meth:`add`) as the Ollama objects a native client reads, built as
    llm/llama_server.go ``Chat`` builds them: a chunk per piece of text or thinking, then (:meth:`final`) one
    ``done`` object with the tool calls (arguments as objects), the done reason and the counts and durations
    from llama-server's ``timings`` (``usage`` where an engine sends no timings)."""

    def __init__(self, route: OllamaRoute, model: str, started: float) -> None:
        self._route = route
        self._model = model
        self._started = started
        self._calls: dict[int, dict[str, str]] = {}
        self._finish: str | None = None
        self._timings: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}

    def add(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The objects to send for this chunk (none for one that carries only counts)."""
        if isinstance(chunk.get("timings"), dict):
            self._timings = chunk["timings"]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        objects = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = _as_object(choice.get("delta"))
            text = delta.get("content") if delta else choice.get("text")
            thinking = delta.get("reasoning_content") or delta.get("reasoning")
            for call in delta.get("tool_calls") or []:
                self._add_call(call)
            if choice.get("finish_reason") is not None:
                self._finish = str(choice["finish_reason"])
            if text or thinking:
                objects.append(self._object(text if isinstance(text, str) else "",
                                            thinking if isinstance(thinking, str) else "", done=False))
        return objects

    def final(self, now: float) -> dict[str, Any]:
        """The ``done`` object that ends the answer (a ValueError for tool calls that are not Ollama's)."""
        final = self._object("", "", done=True)
        final["done_reason"] = "length" if self._finish == "length" else "stop"
        timings, usage = self._timings, self._usage
        final["total_duration"] = int((now - self._started) * 1e9)
        prompt = _count(timings, "cache_n") + _count(timings, "prompt_n") if timings else _count(usage, "prompt_tokens")
        final["prompt_eval_count"] = prompt
        final["prompt_eval_duration"] = int(float(timings.get("prompt_ms") or 0) * 1e6)
        final["eval_count"] = _count(timings, "predicted_n") if timings else _count(usage, "completion_tokens")
        final["eval_duration"] = int(float(timings.get("predicted_ms") or 0) * 1e6)
        calls = self._tool_calls()
        if calls and self._route == "chat":
            final["message"] = {**final["message"], "tool_calls": calls}
        elif calls:
            final["tool_calls"] = calls
        return {key: value for key, value in final.items() if value or key in ("done", "response", "message")}

    def _object(self, text: str, thinking: str, *, done: bool) -> dict[str, Any]:
        head: dict[str, Any] = {"model": self._model, "created_at": now_iso()}
        if self._route == "chat":
            message = {"role": "assistant", "content": text, **({"thinking": thinking} if thinking else {})}
            return {**head, "message": message, "done": done}
        return {**head, "response": text, **({"thinking": thinking} if thinking else {}), "done": done}

    def _add_call(self, call: Any) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index")
        slot = self._calls.setdefault(index if isinstance(index, int) else 0, {"id": "", "name": "", "arguments": ""})
        function = _as_object(call.get("function"))
        for key, value in (("id", call.get("id")), ("name", function.get("name")),
                           ("arguments", function.get("arguments"))):
            if isinstance(value, str):
                slot[key] += value

    def _tool_calls(self) -> list[dict[str, Any]]:
        """accumulatedToolCalls: in index order, arguments parsed into an object; a ValueError where they are not
        one (Ollama fails the request: "llama-server returned invalid tool call arguments")."""
        calls = []
        for index in sorted(self._calls):
            call = self._calls[index]
            try:
                arguments = json.loads(call["arguments"]) if call["arguments"].strip() else {}
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise ValueError(f"the engine returned invalid tool call arguments for {call['name']!r}: "
                                 f"{call['arguments'][:200]!r}")
            calls.append({**({"id": call["id"]} if call["id"] else {}),
                          "function": {"index": index, "name": call["name"], "arguments": arguments}})
        return calls


def _count(values: Mapping[str, Any], key: str) -> int:
    value = values.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


class NativeAnswer:
    """The one object a client that did not stream gets, from the objects of the stream (:meth:`add`), as
    server/routes.go builds it: text and thinking concatenated, tool calls gathered, the last object's fields."""

    def __init__(self, route: OllamaRoute, with_tools: bool) -> None:
        self._route = route
        self._with_tools = with_tools
        self._last: dict[str, Any] = {}
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[Any] = []

    def add(self, answer: Mapping[str, Any]) -> None:
        """One object of the stream, in order."""
        self._last = dict(answer)
        part = answer.get("message") if self._route == "chat" else answer
        if not isinstance(part, dict):
            return
        text = part.get("content" if self._route == "chat" else "response")
        if isinstance(text, str):
            self._text.append(text)
        if isinstance(part.get("thinking"), str):
            self._thinking.append(part["thinking"])
        if self._with_tools and isinstance(part.get("tool_calls"), list):
            self._calls += part["tool_calls"]

    def whole(self) -> dict[str, Any]:
        """The answer as one object: the last one's fields, the text, thinking and tool calls of all."""
        answer = dict(self._last)
        thinking = "".join(self._thinking)
        if self._route == "chat":
            message = dict(answer.get("message") or {"role": "assistant"})
            message["content"] = "".join(self._text)
            message.pop("thinking", None)
            message.pop("tool_calls", None)
            answer["message"] = {**message, **({"thinking": thinking} if thinking else {}),
                                 **({"tool_calls": self._calls} if self._calls else {})}
        else:
            answer["response"] = "".join(self._text)
            answer.pop("thinking", None)
            if thinking:
                answer["thinking"] = thinking
        return answer


def load_answer(route: OllamaRoute, model: str, *, unload: bool) -> dict[str, Any]:
    """What Ollama answers a request that only loads (or, with keep_alive 0, unloads) the model: the proxy's
    answer on an engine that is always loaded."""
    done_reason = "unload" if unload else "load"
    if route == "chat":
        return {"model": model, "created_at": now_iso(), "message": {"role": "assistant", "content": ""},
                "done_reason": done_reason, "done": True}
    return {"model": model, "created_at": now_iso(), "response": "", "done": True, "done_reason": done_reason}


def engine_model(models: Any) -> dict[str, Any]:
    """The first model an OpenAI ``/v1/models`` answer lists (llama-server lists the one it serves)."""
    data = models.get("data") if isinstance(models, dict) else None
    return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}


def model_entry(name: str, listed: Mapping[str, Any]) -> dict[str, Any]:
    """An /api/tags entry (api.ListModelResponse) for the model an engine lists; what it does not say is left
    empty rather than made up."""
    meta = _as_object(listed.get("meta"))
    created = listed.get("created")
    modified = (datetime.fromtimestamp(created, timezone.utc).isoformat().replace("+00:00", "Z")
                if isinstance(created, int) else now_iso())
    details = {"parent_model": "", "format": "gguf", "family": "", "families": None,
               "parameter_size": _parameter_size(meta.get("n_params")), "quantization_level": ""}
    return {"name": name, "model": name, "modified_at": modified, "size": int(meta.get("size") or 0), "digest": "",
            "details": details}


def _parameter_size(n_params: Any) -> str:
    """Ollama's "7.6B" / "494.03M" (format.HumanNumber) from a parameter count."""
    if not isinstance(n_params, int) or n_params <= 0:
        return ""
    if n_params >= 1_000_000_000:
        return f"{n_params / 1e9:.1f}B"
    return f"{n_params / 1e6:.2f}M"


def show_answer(name: str, listed: Mapping[str, Any]) -> dict[str, Any]:
    """/api/show (api.ShowResponse) for the model an engine lists: every name the proxy is asked about is served
    by that one model."""
    entry = model_entry(name, listed)
    meta = _as_object(listed.get("meta"))
    info = {key: value for key, value in (("general.parameter_count", meta.get("n_params")),
                                          ("llama.context_length", meta.get("n_ctx_train")),
                                          ("llama.vocab_size", meta.get("n_vocab"))) if isinstance(value, int)}
    return {"license": "", "modelfile": "", "parameters": "", "template": "", "details": entry["details"],
            "model_info": info, "capabilities": ["completion", "tools"], "modified_at": entry["modified_at"]}


def ps_answer(name: str, listed: Mapping[str, Any], props: Any) -> dict[str, Any]:
    """/api/ps (api.ProcessResponse) for a llama-server: always loaded (``expires_at`` Ollama's forever), the
    context per slot from ``/props``; ``size_vram`` is left out: the proxy cannot tell what is on the GPU."""
    entry = model_entry(name, listed)
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    process = {key: entry[key] for key in ("name", "model", "size", "digest", "details")}
    process["expires_at"] = FOREVER
    if isinstance(n_ctx, int):
        process["context_length"] = n_ctx
    return {"models": [process]}

