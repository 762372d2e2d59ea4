"""Each way a request fails is counted as one kind (load/failures.py), from the client's own errors."""

from __future__ import annotations

import pytest

from pytest_vramcap.load.measure.failures import FAILURE_KINDS, failure_kind
from pytest_vramcap.load.measure.metrics import summarize
from pytest_vramcap.load.measure.record import (
    HTTPStatusError,
    ProtocolError,
    RequestError,
    RequestRecord,
    RequestRefused,
    RequestTimeout,
    StreamCut,
)

BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's 503 (server/sched.go)


@pytest.mark.parametrize("error, kind", [
    (HTTPStatusError(503, f'{{"error":"{BUSY}"}}'), "queue_full"),
    (HTTPStatusError(429, "too many requests"), "queue_full"),
    (HTTPStatusError(400, '{"error":{"message":"the request exceeds the available context size, try increasing it"}}'),
     "context_overflow"),
    (HTTPStatusError(400, '{"error":"the prompt is longer than the context length currently available"}'),
     "context_overflow"),
    (HTTPStatusError(500, "llama-server reported out-of-memory during startup: cudaMalloc failed: out of memory"),
     "oom"),
    (HTTPStatusError(500, "llama-server process has terminated: exit status 1"), "server_error"),
    (HTTPStatusError(404, "model 'x' not found"), "client_error"),
    (RequestTimeout("no complete response within 600 s"), "timeout"),
    (RequestRefused("cannot connect"), "connection"),
    (StreamCut("stream cut after 3 chunks"), "connection"),
    (ProtocolError("a stream event is not JSON"), "protocol"),
])
def test_failure_kinds(error: RequestError, kind: str) -> None:
    assert failure_kind(error) == kind and kind in FAILURE_KINDS


def test_a_summary_counts_failures_by_kind() -> None:
    ok = RequestRecord("a", t_send=0.0, t_first=0.1, t_last=0.5, n_out=4)
    busy = RequestRecord("b", t_send=0.0, error="HTTP 503", error_kind="queue_full")
    silent = RequestRecord("c", t_send=0.0)
    summary = summarize([ok, busy, busy, silent])
    assert summary.errors == 3 and summary.failures == {"queue_full": 2, "no_output": 1}
