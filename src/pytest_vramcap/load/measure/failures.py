"""Why a request failed, as one kind a capacity test can count.

    queue_full        HTTP 503 or 429: the server's queue is full (Ollama: "server busy")
    context_overflow  the prompt does not fit the slot's context
    oom               the server ran out of memory answering
    server_error      any other 5xx (Ollama returns load failures as 500)
    client_error      any other 4xx
    timeout           no complete answer within the deadline
    connection        refused, reset, or a stream cut before its end (a dying server)
    protocol          an answer that is not the OpenAI stream format
    no_output         (summaries only) an answer that streamed no token
    graph_error       (Locust's GRAPH entries) a user's graph that raised: their code, not the server
    internal          a bug of vramcap's own (gevent printed its traceback): never booked on the server

The kinds are one ``Literal``, :data:`~pytest_vramcap.types.FailureKind`.
"""

from __future__ import annotations

import re

from ...engines.logparse import mentions_oom
from ...types import FAILURE_KINDS, FailureKind
from .record import HTTPStatusError, ProtocolError, RequestError, RequestRefused, RequestTimeout, StreamCut

__all__ = ["FAILURE_KINDS", "FailureKind", "failure_kind"]

# llama-server: "the request exceeds the available context size"; Ollama: "the prompt is longer than the
# context length" (llm/llama_server.go). Ollama's own tests accept "context" with exceed/too large/longer/too long.
_CONTEXT_RE = re.compile(r"context\b.*\b(exceed|too large|too long|longer)|(exceed|longer)\w*\b.*\bcontext",
                         re.IGNORECASE)


def failure_kind(error: RequestError) -> FailureKind:
    if mentions_oom(str(error)):
        return "oom"
    if isinstance(error, HTTPStatusError):
        if error.status in (429, 503):
            return "queue_full"
        if _CONTEXT_RE.search(error.body):
            return "context_overflow"
        return "server_error" if error.status >= 500 else "client_error"
    if isinstance(error, RequestTimeout):
        return "timeout"
    if isinstance(error, (RequestRefused, StreamCut)):
        return "connection"
    if isinstance(error, ProtocolError):
        return "protocol"
    return "server_error"
