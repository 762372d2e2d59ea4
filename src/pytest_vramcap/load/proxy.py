"""A recording pass-through in front of the engine: per-request metrics for any client code.

A user's graph talks to whatever base URL it is given, with whatever client library
it uses. We give it one of ours: ``http://127.0.0.1:PORT/<channel>/v1``. Every
request is forwarded to the engine and its answer relayed back; each chat
completion also becomes a :class:`~.stream.RequestRecord` (TTFT, TPOT, tokens, its
place on the timeline) read by the same :class:`~.stream.ChatStream` as our own
client's, timed as the engine's chunks arrive here.

What the engine sees differs from what the graph sent in three documented ways:

* every chat completion is streamed, so the first token can be timed; a client that
  did not ask to stream gets the non-streamed object rebuilt from the stream
  (:mod:`.assemble`); one that asked for ``logprobs`` is passed through unstreamed
  (no TTFT, only its end-to-end time);
* ``stream_options.include_usage`` is set, for exact token counts; the usage-only
  chunk is not relayed to a client that did not ask for it;
* ``request_defaults`` (``cache_prompt: false`` for the runners, as their own requests
  do: a pass must not get the previous one's prefill for free) fill keys the client
  left out, and ``model`` (Ollama's created model) replaces the client's.

A request is labelled by its ``X-Vramcap-Label`` header (not forwarded), else ``chat``.
A channel is one caller's view: its records and its requests in flight, counted when
each arrives and ends (the peak is how wide the graph really fanned out).

The HTTP side is :mod:`.proxy_http`: threads of the standard library's server and
client; under Locust's gevent they are greenlets, with no change.
"""

from __future__ import annotations

import http.client
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .proxy_http import LABEL_HEADER, ProxyServer
from .stream import RequestRecord

__all__ = ["LABEL_HEADER", "Channel", "RecordingProxy"]


@dataclass
class Channel:
    """One caller's requests through the proxy; :attr:`base_url` is what its client is given."""

    base_url: str
    on_start: Callable[[RequestRecord], None] | None = None
    """Called as a recorded request arrives (Locust's capacity search counts requests waiting)."""
    on_end: Callable[[RequestRecord], None] | None = None
    """Called as it ends, failed or not (Locust users fire their events here)."""
    records: list[RequestRecord] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> list[RequestRecord]:
        """Start counting anew (a new pass); the records so far are returned."""
        with self._lock:
            records, self.records, self.peak_in_flight = self.records, [], self.in_flight
        return records

    def begin(self, record: RequestRecord) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.on_start is not None:
            self.on_start(record)

    def end(self, record: RequestRecord) -> None:
        with self._lock:
            self.in_flight -= 1
            self.records.append(record)
        if self.on_end is not None:
            self.on_end(record)


class RecordingProxy:
    """Listens on 127.0.0.1 (an ephemeral port) and forwards to ``upstream``; a context manager."""

    def __init__(self, upstream: str, *, model: str | None = None,
                 request_defaults: Mapping[str, Any] | None = None, read_timeout_s: float = 300.0,
                 idle_timeout_s: float = 120.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the proxy needs an http(s) upstream URL, got {upstream!r}")
        self.upstream = parts
        self.model = model
        self.request_defaults = dict(request_defaults or {})
        self.read_timeout_s = read_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._channels: dict[str, Channel] = {}
        self._numbers = itertools.count(1)
        self._server: ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.server_address[1])

    def start(self) -> RecordingProxy:
        server = self._server = ProxyServer(self, self._idle_timeout_s)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="vramcap-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut the open connections (their threads end), free the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RecordingProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def channel(self, *, on_start: Callable[[RequestRecord], None] | None = None,
                on_end: Callable[[RequestRecord], None] | None = None) -> Channel:
        """A new channel: a base URL (``.../v1``) of its own and the records of the requests made through it."""
        prefix = f"c{next(self._numbers)}"
        channel = Channel(f"http://127.0.0.1:{self.port}/{prefix}/v1", on_start, on_end)
        self._channels[prefix] = channel
        return channel

    def route(self, path: str) -> tuple[Channel | None, str]:
        """The channel a request path is for, and the engine path to forward it to."""
        prefix, _, rest = path.lstrip("/").partition("/")
        return self._channels.get(prefix), self.upstream.path.rstrip("/") + "/" + rest

    def connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        return kind(self.upstream.hostname or "", self.upstream.port, timeout=self.read_timeout_s)

    def prepare(self, body: dict[str, Any]) -> tuple[bool, bool]:
        """Rewrite a chat completion body in place: (stream it from the engine, relay the usage-only chunk)."""
        for key, value in self.request_defaults.items():
            body.setdefault(key, value)
        if self.model:
            body["model"] = self.model
        client_streams = body.get("stream") is True
        if not client_streams and body.get("logprobs"):
            return False, False
        asked = body.get("stream_options")
        options: dict[str, Any] = asked if isinstance(asked, dict) else {}
        relay_usage = client_streams and bool(options.get("include_usage"))
        body["stream"], body["stream_options"] = True, {**options, "include_usage": True}
        return True, relay_usage


