"""Streaming chat client for OpenAI-compatible servers (llama-server, Ollama's /v1).

One :class:`RequestRecord` per request, with monotonic timestamps taken as each
SSE chunk arrives, the server's ``usage`` and, from llama-server, its own
``timings``. Failures raise the :class:`~pytest_vramcap.errors.RequestError`
kinds with the partial record attached, so a caller can still report it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import HTTPStatusError, ProtocolError, RequestError, RequestRefused, RequestTimeout, StreamCut
from ..net import redact
from ..parsers import checked_number
from .failures import failure_kind

__all__ = ["ChatClient", "ChatRequest", "RequestRecord"]


@dataclass(frozen=True)
class ChatRequest:
    messages: Sequence[dict[str, str]]
    max_tokens: int
    label: str = ""
    temperature: float = 0.0
    seed: int = 42
    ignore_eos: bool = True
    """Fixed output length (llama-server extension; Ollama ignores unknown fields)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": list(self.messages),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:
            body["ignore_eos"] = True
        if model:
            body["model"] = model
        body.update(self.extra)
        return body


@dataclass
class RequestRecord:
    """Timestamps (``time.monotonic``) and counts of one streamed request."""

    label: str
    t_send: float
    t_first: float | None = None
    t_last: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    text: str = ""
    n_chunks: int = 0
    n_out: int = 0
    n_out_source: str = "chunks"
    """``usage`` when the server reported completion_tokens, else one token per content chunk."""
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    server_timings: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    """One of :data:`~pytest_vramcap.load.failures.FAILURE_KINDS` when the request failed."""

    @property
    def ttft(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_send

    @property
    def e2e(self) -> float | None:
        return None if self.t_last is None else self.t_last - self.t_send

    @property
    def tpot(self) -> float | None:
        """(E2E - TTFT) / (N_out - 1), defined for N_out >= 2."""
        if self.ttft is None or self.e2e is None or self.n_out < 2:
            return None
        return (self.e2e - self.ttft) / (self.n_out - 1)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "ttft_s": self.ttft, "e2e_s": self.e2e, "tpot_s": self.tpot, "n_out": self.n_out,
            "n_out_source": self.n_out_source, "prompt_tokens": self.prompt_tokens,
            "finish_reason": self.finish_reason, "error": self.error, "error_kind": self.error_kind,
            "server_timings": self.server_timings,
        }


# Where a streamed token can arrive: the answer, and a thinking model's reasoning, which
# llama-server streams as ``reasoning_content`` and Ollama's /v1 as ``reasoning``
# (openai/openai.go). Either is the first token for TTFT.
_DELTA_TEXT_KEYS = ("content", "reasoning_content", "reasoning")


def _content(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return ""
    return "".join(part for part in (delta.get(key) for key in _DELTA_TEXT_KEYS) if isinstance(part, str))


class ChatClient:
    """Async client over one connection pool; create it inside the event loop that uses it."""

    def __init__(self, base_url: str, *, model: str | None = None, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 120.0, total_timeout_s: float = 600.0, max_connections: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.total_timeout_s = total_timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=30.0, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, request: ChatRequest) -> RequestRecord:
        """Stream one chat completion; raises a RequestError kind (with ``.record``) on failure."""
        record = RequestRecord(label=request.label, t_send=time.monotonic())
        try:
            await asyncio.wait_for(self._stream(request, record), timeout=self.total_timeout_s)
        except asyncio.TimeoutError:
            raise self._fail(record, RequestTimeout(f"{request.label or 'request'}: no complete response within "
                                                    f"{self.total_timeout_s:.0f} s")) from None
        except httpx.ConnectError as exc:
            raise self._fail(record, RequestRefused(f"cannot connect to {redact(self.base_url)}: {exc}")) from None
        except httpx.TimeoutException as exc:
            raise self._fail(record, RequestTimeout(f"{request.label or 'request'} timed out: "
                                                    f"{type(exc).__name__}")) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise self._fail(record, StreamCut(f"{request.label or 'request'}: stream cut after {record.n_chunks} "
                                               f"chunks: {exc}")) from None
        return record

    @staticmethod
    def _fail(record: RequestRecord, error: RequestError) -> RequestError:
        record.error = str(error)
        record.error_kind = failure_kind(error)
        error.record = record
        return error

    async def _stream(self, request: ChatRequest, record: RequestRecord) -> None:
        async with self._http.stream("POST", "/v1/chat/completions", json=request.body(self.model)) as response:
            if response.status_code >= 400:
                body = (await response.aread()).decode("utf-8", errors="replace")
                raise self._fail(record, HTTPStatusError(response.status_code, body))
            done = False
            async for line in response.aiter_lines():
                now = time.monotonic()
                if not line.startswith("data:"):
                    continue  # SSE comments (":" keep-alives) and blank separators
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                chunk = self._chunk(record, payload)
                if "error" in chunk:  # errors after the stream began arrive in-band
                    raise self._fail(record, HTTPStatusError(response.status_code, str(chunk["error"])[:500]))
                self._absorb(record, chunk, now)
            if not done:  # llama-server and Ollama's /v1 both end every complete stream with [DONE]
                raise self._fail(record, StreamCut(f"{request.label or 'request'}: stream ended after "
                                                   f"{record.n_chunks} chunks without [DONE]"))

    def _chunk(self, record: RequestRecord, payload: str) -> dict[str, Any]:
        """One ``data:`` event as a JSON object, or a ProtocolError naming what came instead."""
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            raise self._fail(record, ProtocolError(f"{record.label or 'request'}: a stream event is not JSON: "
                                                   f"{payload[:80]!r}")) from None
        if not isinstance(chunk, dict):
            raise self._fail(record, ProtocolError(f"{record.label or 'request'}: a stream event is "
                                                   f"{type(chunk).__name__}, not an object"))
        return chunk

    def _absorb(self, record: RequestRecord, chunk: dict[str, Any], now: float) -> None:
        choices = chunk.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
            raise self._fail(record, ProtocolError(f"{record.label or 'request'}: 'choices' is not a list of objects"))
        for choice in choices:
            text = _content(choice)
            if text:
                record.n_chunks += 1
                record.chunk_times.append(now)
                record.text += text
                if record.t_first is None:
                    record.t_first = now
                record.t_last = now
            if choice.get("finish_reason"):
                record.finish_reason = str(choice["finish_reason"])[:40]
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            record.n_out = self._count(record, usage, "completion_tokens")
            record.n_out_source = "usage"
            if usage.get("prompt_tokens") is not None:
                record.prompt_tokens = self._count(record, usage, "prompt_tokens")
        elif record.n_out_source == "chunks":
            record.n_out = record.n_chunks
        if isinstance(chunk.get("timings"), dict):
            record.server_timings = chunk["timings"]

    def _count(self, record: RequestRecord, usage: dict[str, Any], key: str) -> int:
        try:
            return int(checked_number(usage[key], integer=True, lo=0, hi=2**31 - 1))
        except ValueError as exc:
            raise self._fail(record, ProtocolError(f"{record.label or 'request'}: usage.{key} {exc}")) from None
