"""Streaming chat client for OpenAI-compatible servers (llama-server, Ollama's /v1).

One :class:`RequestRecord` per request (read by :mod:`.stream`), with monotonic
timestamps taken as each SSE chunk arrives, the server's ``usage`` and, from
llama-server, its own ``timings``. Failures raise the :class:`~pytest_vramcap.errors.RequestError`
kinds with the partial record attached, so a caller can still report it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ...net import astream_lines, redact
from .record import HTTPStatusError, RequestRecord, RequestRefused, RequestTimeout, StreamCut
from .stream import ChatStream, fail

__all__ = ["ChatClient", "ChatRequest", "RequestRecord"]

T = TypeVar("T")


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


class ChatClient:
    """Async client over one connection pool; create it inside the event loop that uses it."""

    def __init__(self, base_url: str, *, model: str | None = None, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 120.0, total_timeout_s: float = 600.0, max_connections: int = 64,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``transport`` replaces the network (``httpx.MockTransport`` answers in-process, for tests of the
        client's own reading; tests of an engine's behaviour talk to the real server)."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.total_timeout_s = total_timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=30.0, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
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
        await self._within_limits(record, request.label or "request", self._stream(request, record))
        return record

    async def embed(self, text: str, label: str = "") -> RequestRecord:
        """One ``POST /v1/embeddings`` of ``text`` (OpenAI's API, which llama-server and Ollama answer): its latency
        and prompt tokens; raises a RequestError kind (with ``.record``) on failure."""
        record = RequestRecord(label=label, t_send=time.monotonic(), endpoint="embeddings")
        body: dict[str, Any] = {"input": text, **({"model": self.model} if self.model else {})}
        response = await self._within_limits(record, label or "embedding", self._http.post("/v1/embeddings", json=body))
        record.t_last, record.status = time.monotonic(), response.status_code
        if response.status_code >= 400:
            raise fail(record, HTTPStatusError(response.status_code, response.text))
        try:
            usage = response.json().get("usage") or {}
        except ValueError:
            usage = {}
        tokens = usage.get("prompt_tokens")
        record.prompt_tokens = tokens if isinstance(tokens, int) else None
        return record

    async def _within_limits(self, record: RequestRecord, what: str, exchange: Awaitable[T]) -> T:
        """Await one exchange with the server under the total timeout, its transport errors as RequestError kinds
        (with ``record`` attached): the one mapping for chats and embeddings."""
        try:
            return await asyncio.wait_for(exchange, timeout=self.total_timeout_s)
        except asyncio.TimeoutError:
            raise fail(record, RequestTimeout(f"{what}: no complete response within "
                                              f"{self.total_timeout_s:.0f} s")) from None
        except httpx.ConnectError as exc:
            raise fail(record, RequestRefused(f"cannot connect to {redact(self.base_url)}: {exc}")) from None
        except httpx.TimeoutException as exc:
            raise fail(record, RequestTimeout(f"{what} timed out: {type(exc).__name__}")) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise fail(record, StreamCut(f"{what}: stream cut after {record.n_chunks} chunks: {exc}")) from None

    async def _stream(self, request: ChatRequest, record: RequestRecord) -> None:
        async with self._http.stream("POST", "/v1/chat/completions", json=request.body(self.model)) as response:
            if response.status_code >= 400:
                body = (await response.aread()).decode("utf-8", errors="replace")
                raise fail(record, HTTPStatusError(response.status_code, body))
            stream = ChatStream(record, response.status_code)
            async for line in astream_lines(response):
                if stream.feed(line, time.monotonic()):
                    break
            stream.finish()
