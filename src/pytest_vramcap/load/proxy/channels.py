"""A recording pass-through in front of the engine: per-request metrics for any client code.

A user's graph talks to whatever base URL it is given, with whatever client library
it uses. We give it one of ours: ``http://127.0.0.1:PORT/<channel>/v1``. Every
request is forwarded to the engine and its answer relayed back; each chat
completion also becomes a :class:`~.stream.RequestRecord` (TTFT, TPOT, tokens, its
place on the timeline) read by the same :class:`~.stream.ChatStream` as our own
client's, timed as the engine's chunks arrive here.

Recorded are ``POST .../chat/completions`` and ``POST .../completions`` (Ollama's
``/api/chat`` and ``/api/generate`` too), and embeddings (``POST .../embeddings``, Ollama's
``/api/embed``) as records of their own; anything else (``/models``, ``/responses``...) is
passed through unrecorded, a streamed answer relayed as it comes. With several models, a
request goes to the model its ``model`` field names (:class:`~.router.ModelRoute`: by role,
by the model as given to vramcap, or by the engine's name for it), else to the first.

What the engine sees differs from what the graph sent in three documented ways:

* every chat completion is streamed, so the first token can be timed; a client that
  did not ask to stream gets the non-streamed object rebuilt from the stream
  (:mod:`.assemble`); one that asked for ``logprobs``, and a text completion the
  client did not stream, are passed through unstreamed (no TTFT, only the end-to-end
  time and the usage);
* ``stream_options.include_usage`` is set on streams, for exact token counts; the
  usage-only chunk is not relayed to a client that did not ask for it;
* ``request_defaults`` (``cache_prompt: false`` for the runners, as their own requests
  do: a pass must not get the previous one's prefill for free) fill keys the client
  left out, and ``model`` (Ollama's created model) replaces the client's.

A request is labelled by its ``X-Vramcap-Label`` header (not forwarded), else ``chat``.
A channel is one caller's view: its records and its requests in flight, counted when
each arrives and ends (the peak is how wide the graph really fanned out), and the
requests it passed through unrecorded, counted by endpoint (``POST /v1/embeddings``,
``POST /api/chat``: the method and the path after the channel's prefix), so that a graph
whose calls all went past the recording is seen to have been measured on nothing. A client
that gives up on a request (a cancelled task, a timeout of its own) is noticed while
the proxy waits for the engine, before its answer or between its events: the engine
connection is closed, which stops the generation, and the record ends as a cut stream.
A client that half-closes its connection after its request looks the same and is
taken as gone (no HTTP client library a graph uses does that).

The HTTP side is :mod:`.server` and :mod:`.forward`: threads of the standard library's TCP
server and blocking sockets speaking HTTP/1.1 through :mod:`.wire`; under Locust's gevent
they are greenlets, with no change. They see the proxy as a :class:`~.router.Router`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from ...engines.honoured import EngineKind
from ..measure.record import RequestRecord
from .forward import LABEL_HEADER, serve
from .router import ModelRoute
from .server import ProxyServer
from .wire import EngineConnection, WireError

__all__ = ["LABEL_HEADER", "Channel", "ModelRoute", "RecordingProxy"]

_PROBE_TIMEOUT_S = 5.0
_channel_numbers = itertools.count(1)
"""Channel prefixes are unique in the process, not per proxy: a later proxy may get an earlier one's port, and
clients cache connections by base URL (langchain-openai keeps one httpx client per base URL and timeout)."""


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
    unrecorded: dict[str, int] = field(default_factory=dict)
    """Requests passed through unrecorded since the last reset, by endpoint (``GET /v1/models``: 2)."""
    pass_marker: str = ""
    """Set by a runner for one pass: a line the proxy puts before the first message of every request recorded on
    this channel, so that no pass reuses another's prompt cache (:func:`~..run.rounds.pass_marker`)."""
    keep_records: bool = True
    """False where every request is handed on as it ends (:attr:`on_end`) and nobody reads :attr:`records` (Locust
    users sharing the endpoint's channel): the records are not kept, so memory stays bounded however long the run."""
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def reset(self) -> list[RequestRecord]:
        """Start counting anew (a new pass); the records so far are returned (read :attr:`unrecorded` first)."""
        with self._changed:
            records, self.records, self.peak_in_flight = self.records, [], self.in_flight
            self.unrecorded = {}
        return records

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (those a failed or cancelled invocation left behind end once the
        proxy sees their client gone); False if some still are after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.in_flight and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return self.in_flight == 0

    def begin(self, record: RequestRecord) -> None:
        with self._changed:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.on_start is not None:
            self.on_start(record)

    def end(self, record: RequestRecord) -> None:
        with self._changed:
            self.in_flight -= 1
            if self.keep_records:
                self.records.append(record)
            self._changed.notify_all()
        if self.on_end is not None:
            self.on_end(record)

    def passed(self, endpoint: str) -> None:
        with self._changed:
            self.unrecorded[endpoint] = self.unrecorded.get(endpoint, 0) + 1


class RecordingProxy:
    """Listens on 127.0.0.1 (an ephemeral port) and forwards to ``upstream``; a context manager. Its connections
    see it as a :class:`~.router.Router`.

    ``upstream`` may be None, then set by :meth:`retarget` (and set again): a proxy whose address must be known
    before the engine is (the endpoint a user's module-level clients read as it is imported). Until it is set,
    every request is answered 502."""

    def __init__(self, upstream: str | None, *, model: str | None = None,
                 request_defaults: Mapping[str, Any] | None = None, read_timeout_s: float = 300.0,
                 idle_timeout_s: float = 120.0, name: str = "vramcap-proxy",
                 engine_kind: EngineKind | None = None, routes: Sequence[ModelRoute] = ()) -> None:
        self.upstream = _upstream(upstream) if upstream is not None else None
        self.routes = _checked(routes)
        """Several models: each model's engine and names (a request goes by the model it names, else to the
        first); none: every request to ``upstream``, as ``model``."""
        self.generation = 0
        """Bumped by :meth:`retarget`: the handlers drop engine connections of an earlier one."""
        self.name = name
        self.model = model
        self.request_defaults = dict(request_defaults or {})
        self.read_timeout_s = read_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._channels: dict[str, Channel] = {}
        self._channels_lock = threading.Lock()  # users add and drop channels while handler threads look them up
        self._server: ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self._kind: tuple[int, EngineKind] | None = (0, engine_kind) if engine_kind is not None else None
        """(generation, what that engine is), once asked or given (then it is not asked)."""
        self._kind_lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.server_address[1])

    def start(self) -> RecordingProxy:
        server = self._server = serve(self)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=self.name, daemon=True)
        self._thread.start()
        if self._kind is None:
            self._probe_soon()
        return self

    def stop(self) -> None:
        """Stop accepting, cut the open connections to clients and to the engine (their threads end, the engine
        stops generating what nobody will read), free the port. Idempotent."""
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
        prefix = f"c{next(_channel_numbers)}"
        channel = Channel(f"http://127.0.0.1:{self.port}/{prefix}/v1", on_start, on_end)
        with self._channels_lock:
            self._channels[prefix] = channel
        return channel

    def release(self, channel: Channel) -> None:
        """Forget ``channel`` (a Locust user that stopped): its URL answers 404 from now on."""
        with self._channels_lock:
            self._channels = {prefix: known for prefix, known in self._channels.items() if known is not channel}

    def retarget(self, upstream: str | None, *, model: str | None = None, read_timeout_s: float | None = None,
                 engine_kind: EngineKind | None = None, request_defaults: Mapping[str, Any] | None = None,
                 routes: Sequence[ModelRoute] = ()) -> None:
        """Forward to ``upstream`` (None: to nothing; ``routes``: by model) from the next request on; an exchange
        already under way finishes with the previous engine, and no kept-alive connection to it is used again."""
        if request_defaults is not None:
            self.request_defaults = dict(request_defaults)
        self.upstream = _upstream(upstream) if upstream is not None else None
        self.routes = _checked(routes)
        self.generation += 1
        with self._kind_lock:
            self._kind = (self.generation, engine_kind) if engine_kind is not None else None
        self.model = model
        if read_timeout_s is not None:
            self.read_timeout_s = read_timeout_s
        if self._server is not None and engine_kind is None:
            self._probe_soon()

    def route(self, target: str) -> tuple[Channel | None, str]:
        """The channel a request target is for, and the engine path to forward it to. Ollama's routes are at the
        root of its server, and may come under the channel's ``/v1`` too (a client given the base URL as is)."""
        prefix, _, rest = target.lstrip("/").partition("/")
        with self._channels_lock:
            channel = self._channels.get(prefix)
        base = self.upstream.path.rstrip("/") if self.upstream is not None else ""
        if rest.startswith("v1/api/"):
            rest = rest.removeprefix("v1/")
        if rest.startswith("api/"):
            base = base.removesuffix("/v1")
        return channel, base + "/" + rest

    def engine_kind(self) -> EngineKind:
        """What the engine is, asked once per engine (``GET /api/version`` answers on Ollama, ``GET /props`` on
        llama-server; anything else is another OpenAI server); an engine that did not answer is asked again next
        time. :meth:`start` and :meth:`retarget` ask at once, so a first request seldom waits for it."""
        generation = self.generation
        with self._kind_lock:
            if self._kind is not None and self._kind[0] == generation:
                return self._kind[1]
            kind: EngineKind = ("ollama" if self._answers("/api/version", "version")
                                else "llama-server" if self._answers("/props", "default_generation_settings")
                                else "openai")
            self._kind = (generation, kind)
            return kind

    def _answers(self, path: str, key: str) -> bool:
        """Whether ``GET path`` beside the engine's /v1 answers 200 with a JSON object holding ``key``; short
        timeouts: a hung engine must not hold the requests that wait for this answer."""
        upstream = self.upstream
        if upstream is None:
            raise ConnectionRefusedError("no engine behind this endpoint")
        tls = upstream.scheme == "https"
        engine = EngineConnection.open(upstream.hostname or "", upstream.port or (443 if tls else 80), tls=tls,
                                       timeout_s=_PROBE_TIMEOUT_S)
        try:
            engine.send("GET", upstream.path.rstrip("/").removesuffix("/v1") + path,
                        [("Accept-Encoding", "identity")], b"")
            status, _headers, body = engine.answer("GET")
            data = body.read()
        finally:
            engine.close()
        try:
            answer = json.loads(data) if status == 200 else None
        except ValueError:
            return False
        return isinstance(answer, dict) and key in answer

    def _probe_soon(self) -> None:
        """Ask what the engine is in the background (a failure is left for the first request to meet)."""
        def probe() -> None:
            try:
                self.engine_kind()
            except (OSError, WireError):
                pass

        if self.upstream is not None:
            threading.Thread(target=probe, name=f"{self.name}-probe", daemon=True).start()

    def model_route(self, name: str | None) -> ModelRoute | None:
        if self.upstream is None:
            return None
        if not self.routes:
            return ModelRoute(self.upstream.geturl(), self.model)
        return next((route for route in self.routes if name in route.names), self.routes[0])

    def connect(self, route: ModelRoute | None) -> EngineConnection:
        upstream = _upstream(route.upstream) if route is not None and self.upstream is not None else None
        if upstream is None:
            raise ConnectionRefusedError("no engine behind this endpoint: it forwards only while vramcap runs a "
                                         "module-level graph (a client made at import and used by a factory or "
                                         "build lands here: make it inside the factory, with the URL it is given)")
        tls = upstream.scheme == "https"
        return EngineConnection.open(upstream.hostname or "", upstream.port or (443 if tls else 80),
                                     tls=tls, timeout_s=self.read_timeout_s)

    def prepare(self, body: dict[str, Any], *, chat: bool, route: ModelRoute | None) -> tuple[bool, bool]:
        """Rewrite a (chat) completion body in place: (stream it from the engine, relay the usage-only chunk)."""
        for key, value in self.request_defaults.items():
            body.setdefault(key, value)
        if route is not None and route.model:
            body["model"] = route.model
        client_streams = body.get("stream") is True
        if not client_streams and (not chat or body.get("logprobs")):
            return False, False
        asked = body.get("stream_options")
        options: dict[str, Any] = asked if isinstance(asked, dict) else {}
        relay_usage = client_streams and bool(options.get("include_usage"))
        body["stream"], body["stream_options"] = True, {**options, "include_usage": True}
        return True, relay_usage


def _checked(routes: Sequence[ModelRoute]) -> tuple[ModelRoute, ...]:
    for route in routes:
        _upstream(route.upstream)
    return tuple(routes)


def _upstream(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the proxy needs an http(s) upstream URL, got {url!r}")
    return parts


