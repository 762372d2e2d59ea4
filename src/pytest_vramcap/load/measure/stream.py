"""One streamed chat completion, read without I/O: SSE lines in, a :class:`RequestRecord` out.

The asyncio client (:mod:`.client`) and the Locust users (gevent) read streams with
different HTTP libraries; both feed the lines here, so TTFT, token counts and what
counts as a broken stream are decided once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...parsers import checked_number
from .failures import failure_kind
from .record import HTTPStatusError, ProtocolError, RequestError, RequestRecord, StreamCut

__all__ = ["STALE_CONNECTION_RETRIES", "ChatStream", "RequestRecord", "fail", "json_object"]

STALE_CONNECTION_RETRIES = 1
"""A request whose pooled keep-alive connection is closed before any answer is sent again on a new one, once.
llama-server closes some kept-alive connections after a streamed answer (measured: 15 of 59 back-to-back
requests on one geventhttpclient connection met a closed socket; each second try succeeded); the server
never answered those requests, as browsers and httpx's pool assume when they send them again the same way.
A connection that closes after the status line is a cut stream, never retried."""


# Where a streamed token can arrive: the answer, and a thinking model's reasoning, which
# llama-server streams as ``reasoning_content`` and Ollama's /v1 as ``reasoning``
# (openai/openai.go). Either is the first token for TTFT.
_DELTA_TEXT_KEYS = ("content", "reasoning_content", "reasoning")


def _content(choice: dict[str, Any]) -> str:
    """The text a chunk's choice carries: a chat delta's, or a text completion's (``/v1/completions``)."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        text = choice.get("text")
        return text if isinstance(text, str) else ""
    return "".join(part for part in (delta.get(key) for key in _DELTA_TEXT_KEYS) if isinstance(part, str))


def _tool_call_text(choice: dict[str, Any]) -> str:
    """The pieces of tool calls a chat delta carries (an agent's answer may be nothing else): tokens too."""
    delta = choice.get("delta")
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    if not isinstance(calls, list):
        return ""
    functions = [call.get("function") for call in calls if isinstance(call, dict)]
    return "".join(part for function in functions if isinstance(function, dict)
                   for part in (function.get("name"), function.get("arguments")) if isinstance(part, str))


def json_object(record: RequestRecord, text: str, what: str) -> dict[str, Any]:
    """``text`` (one event or line of an answer, ``what`` names it) as a JSON object; else ``record`` fails with a
    ProtocolError naming what came instead, which is raised."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise fail(record, ProtocolError(f"{record.label or 'request'}: {what} is not JSON: {text[:80]!r}")) from None
    if not isinstance(value, dict):
        raise fail(record, ProtocolError(f"{record.label or 'request'}: {what} is {type(value).__name__}, "
                                         f"not an object"))
    return value


def fail(record: RequestRecord, error: RequestError) -> RequestError:
    """``error`` with ``record`` attached, and the record marked failed with its kind."""
    record.error = str(error)
    record.error_kind = failure_kind(error)
    error.record = record
    return error


class ChatStream:
    """The SSE lines of one ``/v1/chat/completions`` stream, fed as they arrive."""

    def __init__(self, record: RequestRecord, status: int = 200,
                 on_chunk: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.record = record
        self.status = status
        self.done = False
        self.on_chunk = on_chunk
        """Sees every event's JSON object before it is counted (the proxy rebuilds answers from them)."""

    def feed(self, line: str, now: float) -> bool:
        """Take one line received at ``now`` (monotonic); True once ``[DONE]`` arrived. Raises a RequestError kind."""
        if not line.startswith("data:"):
            return self.done  # SSE comments (":" keep-alives) and blank separators
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return True
        chunk = self._chunk(payload)
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        if "error" in chunk:  # errors after the stream began arrive in-band
            raise fail(self.record, HTTPStatusError(self.status, str(chunk["error"])[:500]))
        self._absorb(chunk, now)
        return False

    def finish(self) -> None:
        """The stream ended: a StreamCut unless it was complete."""
        if not self.done:  # llama-server and Ollama's /v1 both end every complete stream with [DONE]
            raise fail(self.record, StreamCut(f"{self.record.label or 'request'}: stream ended after "
                                              f"{self.record.n_chunks} chunks without [DONE]"))

    def _chunk(self, payload: str) -> dict[str, Any]:
        """One ``data:`` event as a JSON object, or a ProtocolError naming what came instead."""
        return json_object(self.record, payload, "a stream event")

    def _absorb(self, chunk: dict[str, Any], now: float) -> None:
        record = self.record
        choices = chunk.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
            raise fail(record, ProtocolError(f"{record.label or 'request'}: 'choices' is not a list of objects"))
        for choice in choices:
            text = _content(choice)
            if text or _tool_call_text(choice):
                record.n_chunks += 1
                if text:
                    record.text_parts.append(text)
                if record.t_first is None:
                    record.t_first = now
                record.t_last = now
            if choice.get("finish_reason"):
                record.finish_reason = str(choice["finish_reason"])[:40]
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            record.n_out = self._count(usage, "completion_tokens")
            record.n_out_source = "usage"
            if usage.get("prompt_tokens") is not None:
                record.prompt_tokens = self._count(usage, "prompt_tokens")
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                record.cached_tokens = self._count(details, "cached_tokens", "usage.prompt_tokens_details")
        elif record.n_out_source == "chunks":
            record.n_out = record.n_chunks
        if isinstance(chunk.get("timings"), dict):
            record.server_timings = chunk["timings"]
            if record.cached_tokens is None and chunk["timings"].get("cache_n") is not None:
                record.cached_tokens = self._count(chunk["timings"], "cache_n", "timings")

    def _count(self, values: dict[str, Any], key: str, where: str = "usage") -> int:
        try:
            return int(checked_number(values[key], integer=True, lo=0, hi=2**31 - 1))
        except ValueError as exc:
            raise fail(self.record, ProtocolError(f"{self.record.label or 'request'}: {where}.{key} {exc}")) from None
