"""One answer of Ollama's native API (``/api/chat``, ``/api/generate``), read without I/O: NDJSON lines in,
a :class:`RequestRecord` out.

Ollama streams one JSON object per line (server/routes.go ``streamResponse``): a
piece of the answer (``message.content`` / ``message.thinking`` for chat, ``response`` /
``thinking`` for generate), then an object with ``"done": true``, the done reason and
api.Metrics: the engine's own token counts and durations, and ``load_duration``, the
time the request waited for the model to load. An error after the stream began is an
``{"error": ...}`` line (Ollama gives it no status: a 500, as its handlers default to).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .record import HTTPStatusError, RequestRecord, StreamCut
from .stream import fail, json_object

__all__ = ["OllamaStream"]

_METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
            "eval_duration")


class OllamaStream:
    """The lines of one native answer, fed as they arrive (the same contract as :class:`~.stream.ChatStream`)."""

    def __init__(self, record: RequestRecord, on_chunk: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.record = record
        self.done = False
        self.on_chunk = on_chunk
        """Sees every object before it is counted (the proxy relays or rebuilds the answer from them)."""

    def feed(self, line: str, now: float) -> bool:
        """Take one line received at ``now`` (monotonic); True once the ``done`` object arrived."""
        if not line.strip():
            return self.done
        answer = json_object(self.record, line, "an answer line")
        if self.on_chunk is not None:
            self.on_chunk(answer)
        if "error" in answer:
            raise fail(self.record, HTTPStatusError(500, str(answer["error"])[:500]))
        self._absorb(answer, now)
        return self.done

    def finish(self) -> None:
        """The answer ended: a StreamCut unless its ``done`` object came."""
        if not self.done:
            raise fail(self.record, StreamCut(f"{self.record.label or 'request'}: the answer ended after "
                                              f"{self.record.n_chunks} chunks without its done object"))

    def _absorb(self, answer: dict[str, Any], now: float) -> None:
        record = self.record
        message = answer.get("message")
        part = message if isinstance(message, dict) else answer
        text = part.get("content") if isinstance(message, dict) else answer.get("response")
        pieces = [piece for piece in (text, part.get("thinking")) if isinstance(piece, str) and piece]
        if pieces or part.get("tool_calls"):
            record.n_chunks += 1
            if isinstance(text, str) and text:
                record.text_parts.append(text)
            if record.t_first is None:
                record.t_first = now
            record.t_last = now
        if answer.get("done") is not True:
            if record.n_out_source == "chunks":
                record.n_out = record.n_chunks
            return
        self.done = True
        record.t_last = record.t_last if record.t_last is not None else now
        record.finish_reason = str(answer.get("done_reason") or "stop")[:40]
        metrics = {key: answer[key] for key in _METRICS if isinstance(answer.get(key), int) and answer[key] >= 0}
        record.engine_metrics = metrics
        if "eval_count" in metrics:
            record.n_out, record.n_out_source = metrics["eval_count"], "usage"
        if "prompt_eval_count" in metrics:
            record.prompt_tokens = metrics["prompt_eval_count"]
