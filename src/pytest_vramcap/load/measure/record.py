"""What one request measured (:class:`RequestRecord`), and the errors a failed request raises with it.

The errors live here, beside the record they carry, so that neither needs the other's module: a
:class:`RequestError` takes its partial record in its constructor (or gets it from
:func:`~.stream.fail`), and callers that catch one can still report what the request measured.

    RequestError (an EngineError)   one request failed; ``record`` holds its timestamps up to the failure
    ├── RequestRefused              the connection was refused or reset before a response (a ServerUnreachable)
    ├── HTTPStatusError             4xx/5xx, or an error sent inside the stream; carries status and body
    ├── StreamCut                   the stream ended before its final chunk
    ├── ProtocolError               an answer that is not the OpenAI stream format (bad JSON, bad counts)
    └── RequestTimeout              no complete response within the deadline
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...engines.honoured import Audit
from ...errors import EngineError, ServerUnreachable
from ...types import FailureKind

__all__ = ["HTTPStatusError", "ProtocolError", "RequestError", "RequestRecord", "RequestRefused", "RequestTimeout",
           "StreamCut", "number_turns"]


@dataclass
class RequestRecord:
    """Timestamps (``time.monotonic``) and counts of one streamed request."""

    label: str
    t_send: float
    endpoint: str = "chat"
    """``chat`` (a completion: TTFT, TPOT and E2E count it) or ``embeddings`` (its latency is reported apart)."""
    model: str | None = None
    """The model role the request went to, where a run has several (None: the one model)."""
    turn: int | None = None
    """Which request of its agent (label) in the pass this is, from 1: the turn of a conversation. Numbered by
    the runner when the pass ends (:func:`number_turns`)."""
    t_first: float | None = None
    t_last: float | None = None
    text_parts: list[str] = field(default_factory=list, repr=False)
    """The streamed text as it came, joined only when asked for (:attr:`text`): appending to one string would
    copy it once per token, on the proxy's timing thread."""
    n_chunks: int = 0
    n_out: int = 0
    n_out_source: str = "chunks"
    """``usage`` when the server reported completion_tokens, else one token per content chunk."""
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    """Prompt tokens the engine served from its prompt cache: ``usage.prompt_tokens_details.cached_tokens``
    (OpenAI's field; llama-server and vLLM send it), else llama-server's ``timings.cache_n``. None where the
    engine does not say: Ollama's native answers fold cached and evaluated tokens into ``prompt_eval_count``."""
    finish_reason: str | None = None
    server_timings: dict[str, Any] | None = None
    """llama-server's ``timings`` of the answer, as it sent them."""
    engine_metrics: dict[str, int] | None = None
    """Ollama's api.Metrics of a native answer (``load_duration``, ``eval_count``... in nanoseconds and tokens)."""
    audit: Audit | None = None
    """What the request asked of its engine and what the engine drops of it (the recording proxy's requests)."""
    client_options: dict[str, Any] | None = None
    """What a native Ollama request asked of the engine beyond its prompt: its ``options`` and ``keep_alive``
    (the ``client_options`` verdict compares them with the plan); None for an OpenAI request."""
    error: str | None = None
    error_kind: FailureKind | None = None
    """Set when the request failed (:mod:`.failures` says which answer is which kind)."""
    status: int | None = None
    """The HTTP status, once the server answered."""

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

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
    def load_s(self) -> float | None:
        """How long the request waited for the engine to load the model (Ollama's ``load_duration``)."""
        metrics = self.engine_metrics or {}
        return metrics["load_duration"] / 1e9 if "load_duration" in metrics else None

    @property
    def prefill_s(self) -> float | None:
        """The engine's own prompt-processing time: llama-server's ``timings.prompt_ms``, or Ollama's
        ``prompt_eval_duration``; None where the engine reports neither."""
        prompt_ms = (self.server_timings or {}).get("prompt_ms")
        if isinstance(prompt_ms, (int, float)) and prompt_ms >= 0:
            return float(prompt_ms) / 1000
        metrics = self.engine_metrics or {}
        return metrics["prompt_eval_duration"] / 1e9 if "prompt_eval_duration" in metrics else None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "endpoint": self.endpoint, "model": self.model, "turn": self.turn,
            "ttft_s": self.ttft, "e2e_s": self.e2e, "tpot_s": self.tpot,
            "n_out": self.n_out,
            "n_out_source": self.n_out_source, "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens, "prefill_s": self.prefill_s,
            "finish_reason": self.finish_reason, "error": self.error, "error_kind": self.error_kind,
            "server_timings": self.server_timings, "engine_metrics": self.engine_metrics,
            "client_options": self.client_options, "audit": self.audit.to_dict() if self.audit is not None else None,
        }


def number_turns(records: list[RequestRecord]) -> None:
    """Set each record's :attr:`~RequestRecord.turn`: its place, by send time, among its label's requests. An
    agent's conversation sends one turn after another, so this is the turn, for the runner's own conversations
    and for a graph's agents (which carry their history themselves) alike."""
    counts: dict[str, int] = {}
    for record in sorted(records, key=lambda r: r.t_send):
        counts[record.label] = counts.get(record.label, 0) + 1
        record.turn = counts[record.label]


class RequestError(EngineError):
    """A request to a running server failed; ``record`` holds its timestamps up to the failure."""

    def __init__(self, message: str, record: RequestRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


class RequestRefused(RequestError, ServerUnreachable):
    """The connection was refused or reset before a response."""


class HTTPStatusError(RequestError):
    """A 4xx/5xx answer, or an error the server sent inside a stream that had begun."""

    def __init__(self, status: int, body: str, record: RequestRecord | None = None) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}", record)
        self.status = status
        self.body = body


class StreamCut(RequestError):
    """The stream ended before its final chunk."""


class ProtocolError(RequestError):
    """An answer that is not the OpenAI stream format: a chunk that is not a JSON object, a bad token count."""


class RequestTimeout(RequestError):
    """No complete response within the deadline."""
