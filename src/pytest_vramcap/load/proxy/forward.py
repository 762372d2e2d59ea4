"""The recording proxy's forwarding: each client request sent to the engine, completions recorded on the way.

A client connection is a handler of :mod:`.server` (keep-alive, so a client's pooled
connection stays one thread and one engine connection); both sides speak HTTP/1.1
through :mod:`.wire` (``http.server`` and ``http.client`` parsed every head with the
``email`` package, most of the proxy's cost before a first token); streams go back
through :mod:`.relay`, unstreamed answers are rebuilt by :mod:`.assemble`. Ollama's native
``/api/chat`` and ``/api/generate`` are recorded too: relayed as they are to an engine
that serves them, translated by :mod:`.ollama` for one that does not (which then also
gets ``/api/tags``, ``/api/show``, ``/api/ps`` and ``/api/version`` answered here). The
handler asks the proxy only what a :class:`~.router.Router` answers; :mod:`.channels`
says what is recorded and what is changed on the way.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ...engines.honoured import Route, audit
from ..measure.ollama_stream import OllamaStream
from ..measure.record import (
    HTTPStatusError,
    ProtocolError,
    RequestError,
    RequestRecord,
    RequestRefused,
    RequestTimeout,
    StreamCut,
)
from ..measure.stream import STALE_CONNECTION_RETRIES, ChatStream, fail
from . import ollama, wire
from .assemble import CompletionAssembler
from .relay import ChunkedRelay, ClientGone, EventRelay, NdjsonRelay, StreamRelay
from .router import ModelRoute, Recorder, Router
from .server import ClientHandler, ProxyServer
from .wire import BodyReader, EngineConnection, Headers

__all__ = ["LABEL_HEADER", "serve"]

LABEL_HEADER = "X-Vramcap-Label"
DEFAULT_LABEL = "chat"
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                            "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding", "expect",
                            LABEL_HEADER.lower()})
"""Hop-by-hop headers (RFC 9110 7.6.1), those we set ourselves, and ours."""
_RECORDED = ("/chat/completions", "/completions")
"""The endpoints whose requests are recorded (OpenAI's; llama-server and Ollama serve both under /v1)."""
_ENGINE_FAILED = (OSError, wire.WireError)
_OLLAMA_ANSWERED = {("GET", "tags"), ("POST", "show"), ("GET", "ps"), ("GET", "version"), ("HEAD", "version")}
"""Ollama's routes the proxy answers itself for an engine without them (what clients ask before they chat)."""


def serve(router: Router) -> ProxyServer:
    """The proxy's server, bound to an ephemeral port of 127.0.0.1 (``serve_forever`` it in a thread)."""
    return ProxyServer(router, _Handler)


class _Handler(ClientHandler):
    """Relays each request to the engine on a connection of its own; completions are recorded on the way."""

    def setup(self) -> None:
        self._engine: EngineConnection | None = None
        self._engine_generation = 0
        self._engine_upstream: str | None = None
        self._route: ModelRoute | None = None
        """The model the request being relayed goes to (:meth:`Router.model_route` of the model it names)."""
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._drop_engine()

    def engine_socket(self) -> socket.socket | None:
        engine = self._engine
        return engine.sock if engine is not None else None

    def relay(self, target: str, body: bytes, arrived: float) -> None:
        method, headers = self.command, self.headers
        recorder, path = self.router.route(target)
        if recorder is None:
            self._reply_error(404, f"no vramcap channel at {target.split('?')[0][:100]}")
            return
        endpoint = path.split("?")[0]
        native = endpoint.rpartition("/api/")[2] if "/api/" in endpoint else None
        recorded = method == "POST" and (endpoint.endswith(_RECORDED) or native in ("chat", "generate"))
        embedding = method == "POST" and (endpoint.endswith("/embeddings") or native == "embed")
        # Only a JSON object names a model: a blob upload (Ollama's /api/blobs, a GGUF) is not decoded.
        payload = _json_object(body) if method == "POST" and body.lstrip().removeprefix(_BOM)[:1] == b"{" else None
        self._route = self.router.model_route(_model_named(payload))
        role = self._route.role if self._route is not None else None
        if native is not None and self._ollama_answered(native, target, path, recorder,
                                                        payload if recorded else None):
            return
        label = headers.get(LABEL_HEADER) or DEFAULT_LABEL
        if embedding and payload is not None:
            record = RequestRecord(label=label, t_send=arrived, endpoint="embeddings", model=role)
            recorder.begin(record)
            try:
                answer_end = self._embedding(path, payload, record, native=native == "embed")
            finally:
                recorder.end(record)
            answer_end()
            return
        completion_route = _completion_route(native)
        if not recorded or payload is None:
            recorder.passed(f"{method} {_after_prefix(target)}")
            self._plain(path, body)
            return
        record = RequestRecord(label=label, t_send=arrived, model=role)
        chat = endpoint.endswith("/chat/completions")
        route: Route = ("api/chat" if completion_route == "chat" else "api/generate" if completion_route
                        else "chat/completions" if chat else "completions")
        asked = dict(payload)  # as the client sent it: the proxy adds fields of its own on the way
        if recorder.pass_marker:
            _lead_with(payload, recorder.pass_marker)
        recorder.begin(record)
        try:
            if completion_route is not None:
                answer_end = self._native(completion_route, path, payload, record)
            else:
                answer_end = self._completion(path, payload, record, chat=chat)
        finally:
            self._audit(record, route, asked)  # after the answer's last byte was timed: a probe costs no latency
            recorder.end(record)
        # Only now the client gets the end of its answer: a graph that returns has every request in the records.
        answer_end()

    def _audit(self, record: RequestRecord, route: Route, payload: dict[str, Any]) -> None:
        """What the request asks of its engine, before the proxy adds its own fields (an engine whose kind could
        not be asked is left unaudited: its request fails on its own)."""
        try:
            record.audit = audit(self.router.engine_kind(), route, payload)
        except _ENGINE_FAILED:
            pass

    # ------------------------------------------------------------------ the engine

    def _forward(self, path: str, content: bytes, method: str | None = None) -> tuple[int, Headers, BodyReader]:
        """Send the request (as ``method``, else as it came) on this connection's engine connection; once more if
        that one had gone stale."""
        method = method or self.command
        fields = [(name, value) for name, value in self.headers.items() if name.lower() not in _NOT_FORWARDED]
        fields.append(("Accept-Encoding", "identity"))
        upstream = self._route.upstream if self._route is not None else None
        if self._engine is not None and (self._engine_generation, self._engine_upstream) != (
                self.router.generation, upstream):
            self._drop_engine()  # the proxy forwards elsewhere now (retarget), or this model is on another engine
        for attempt in range(1 + STALE_CONNECTION_RETRIES):
            if self._engine is None:
                self._engine_generation, self._engine_upstream = self.router.generation, upstream
                self._engine = self.router.connect(self._route)
                if self.server.stopping:  # connected after the proxy cut its connections: nobody would cut this
                    self._drop_engine()
                    raise ConnectionAbortedError("the proxy is stopping")
            try:
                self._engine.send(method, path, fields, content)
                self._await_engine()
                return self._engine.answer(method)
            except wire.StaleConnection:  # closed by the engine after its last answer, before this one (stream.py)
                self._drop_engine()
                if attempt == STALE_CONNECTION_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _await_engine(self) -> None:
        """Wait until the engine has sent something; a ClientGone if the client leaves first (a request waiting
        in the engine's queue or in its prefill is dropped then, and so stops), a TimeoutError after the read
        timeout."""
        engine = self._engine
        assert engine is not None
        if engine.has_buffered():
            return
        poller = select.poll()
        poller.register(engine.sock, select.POLLIN)
        poller.register(self.connection, select.POLLIN)
        deadline = time.monotonic() + self.router.read_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            ready = {fd for fd, _ in poller.poll(left * 1000)}
            if engine.sock.fileno() in ready:
                return
            if self.connection.fileno() in ready:
                if self._client_left():
                    raise ClientGone("the connection was closed")
                poller.unregister(self.connection)  # it sent more (a pipelined request): wait for the engine only
        raise TimeoutError(f"the engine sent nothing for {self.router.read_timeout_s:.0f} s")

    def _done_with(self, body: BodyReader) -> None:
        """The engine's answer was read: its connection is kept for the next request if it can carry one."""
        if self._engine is not None and not self._engine.answered(body):
            self._drop_engine()

    def _drop_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()  # mid-answer, this is what tells the engine to stop generating
            self._engine = None

    def _plain(self, path: str, body: bytes) -> None:
        """Pass a request through unrecorded; a chunked answer (a stream) is relayed piece by piece as it comes."""
        try:
            status, headers, answer = self._forward(path, body)
            data = None if answer.chunked else answer.read()
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            self._reply_error(502, f"the engine did not answer: {type(exc).__name__}: {exc}")
            return
        content_type = headers.get("Content-Type") or "application/json"
        if data is not None:
            self._done_with(answer)
            try:  # a HEAD answer says how long the body it does not carry is
                length = headers.content_length() if self.command == "HEAD" else None
            except wire.WireError:
                length = None
            self._reply(status, content_type, data, length)
            return
        relay = ChunkedRelay(self.wfile, content_type, status, **self._framing())
        try:
            while piece := answer.read1():
                relay.send(piece)
            relay.end()
            self._done_with(answer)
        except (ClientGone, *_ENGINE_FAILED):  # one side is gone mid-answer: so is this exchange
            self._drop_engine()
            self.close_connection = True

    def _completion(self, path: str, payload: dict[str, Any], record: RequestRecord, *,
                    chat: bool) -> Callable[[], None]:
        """Forward one (chat) completion and relay or rebuild its answer, all but its end: that is returned."""
        client_streams = payload.get("stream") is True
        streamed, relay_usage = self.router.prepare(payload, chat=chat, route=self._route)
        try:
            status, headers, answer, data = self._ask_engine(path, payload, record, whole=not streamed)
        except _Unanswered as unanswered:
            return unanswered.reply(self._reply_error)
        if data is not None:
            record.t_last = time.monotonic()
            self._done_with(answer)
            if status >= 400:
                fail(record, HTTPStatusError(status, data.decode("utf-8", errors="replace")))
            else:
                _count_usage(record, data)
            return partial(self._reply, status, headers.get("Content-Type") or "application/json", data)
        if client_streams:
            relay = EventRelay(self.wfile, relay_usage, **self._framing())
            error, complete = self._read_stream(answer, ChatStream(record, status, on_chunk=relay.saw), relay)
            if complete:
                return relay.end  # the engine ended its answer: the client gets all of it, whatever we made of it
            self.close_connection = True  # the engine's stream was cut, or the client left: so is the exchange
            return lambda: None
        assembler = CompletionAssembler()
        error, _ = self._read_stream(answer, ChatStream(record, status, on_chunk=assembler.add), None)
        if error is None:
            return partial(self._reply, 200, "application/json", json.dumps(assembler.completion()).encode())
        return partial(self._reply_error, 500 if isinstance(error, HTTPStatusError) else 502, str(error))

    def _read_stream(self, answer: BodyReader, stream: ChatStream | OllamaStream, relay: StreamRelay | None,
                     ) -> tuple[RequestError | None, bool]:
        """Time and count the engine's stream into its record (``stream`` reads it), what each read brought
        relayed at once (to a streaming client): the error, if any, and whether the engine's answer was read to
        its end."""
        record = stream.record
        error: RequestError | None = None
        complete = False
        pending = b""
        try:
            while True:  # a chunk at a time (an engine sends an event per chunk), split into lines here
                if not answer.complete:  # its end may have come with the last piece: nothing more to wait for
                    self._await_engine()
                data = answer.read1()
                now = time.monotonic()
                if data:
                    *lines, pending = (pending + data).split(b"\n")  # an unfinished line waits for the rest
                else:
                    lines = [pending] if pending else []
                for line in lines:
                    if error is None:
                        try:
                            stream.feed(line.decode("utf-8", errors="replace").rstrip("\r"), now)
                        except RequestError as exc:  # marked on the record; what follows is still relayed
                            error = exc
                    if relay is not None:
                        relay.line(line + b"\n")
                if not data:
                    break
                if relay is not None:
                    relay.flush()
            complete = True
            self._done_with(answer)
            if error is None:
                stream.finish()
        except RequestError as exc:
            error = exc
        except ClientGone as exc:
            error = fail(record, StreamCut(f"{record.label}: the client closed its connection after "
                                           f"{record.n_chunks} chunks: {exc}"))
        except TimeoutError:
            error = fail(record, RequestTimeout(f"{record.label}: the engine sent nothing for "
                                                f"{self.router.read_timeout_s:.0f} s"))
        except _ENGINE_FAILED as exc:
            error = fail(record, StreamCut(f"{record.label}: the engine's stream was cut after {record.n_chunks} "
                                           f"chunks: {type(exc).__name__}: {exc}"))
        if not complete:
            self._drop_engine()  # an unread or cut answer: this engine connection is done
        return error, complete

    # ------------------------------------------------------------------ Ollama's native API

    def _ollama_answered(self, route: str, target: str, path: str, recorder: Recorder,
                         payload: dict[str, Any] | None) -> bool:
        """Answer, unrecorded, what Ollama's API asks that is not a completion: a request that only loads or
        unloads the model (passed to an Ollama engine; any other is always loaded), and, for an engine without
        Ollama's API, what clients ask before they chat. False: not answered here."""
        completion = _completion_route(route) if payload is not None else None
        if completion is None and (self.command, route) not in _OLLAMA_ANSWERED:
            return False
        if completion is not None and not ollama.is_load_request(completion, payload or {}):
            return False
        try:
            speaks_ollama = self.router.engine_kind() == "ollama"
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            self._ollama_error(502, f"the engine did not answer: {exc}")
            return True
        if speaks_ollama and completion is None:
            return False
        recorder.passed(f"{self.command} {_after_prefix(target)}")
        name = self._served_model() or str((payload or {}).get("model") or (payload or {}).get("name") or "")
        if speaks_ollama:  # a load or unload: the engine's to do, of the model it serves
            self._plain(path, json.dumps({**(payload or {}), "model": name}).encode())
            return True
        if completion is not None:
            unload = ollama.keep_alive_s((payload or {}).get("keep_alive")) == 0
            self._reply(200, "application/json; charset=utf-8",
                        json.dumps(ollama.load_answer(completion, name, unload=unload)).encode())
            return True
        if route == "version":
            self._reply(200, "application/json; charset=utf-8", json.dumps({"version": ollama.API_VERSION}).encode())
            return True
        base = path[:path.rindex("/api/")]  # the upstream's own base path, beside which /v1 is
        try:
            listed = ollama.engine_model(self._engine_json(base + "/v1/models"))
            name = name or str(listed.get("id") or "")
            answer: Any
            if route == "tags":
                answer = {"models": [ollama.model_entry(name, listed)]}
            elif route == "show":
                answer = ollama.show_answer(name, listed)
            else:
                try:  # llama-server's; another OpenAI server has none: the context is left out
                    props = self._engine_json(base + "/props")
                except ValueError:
                    props = None
                answer = ollama.ps_answer(name, listed, props)
        except (ValueError, *_ENGINE_FAILED) as exc:
            self._drop_engine()
            self._ollama_error(502, f"the engine did not answer: {exc}")
            return True
        self._reply(200, "application/json; charset=utf-8", json.dumps(answer).encode())
        return True

    def _ask_engine(self, path: str, body: dict[str, Any], record: RequestRecord, *, whole: bool,
                    method: str | None = None) -> tuple[int, Headers, BodyReader, bytes | None]:
        """Send a recorded request's ``body``: the answer's status, head, body reader and, for an error or when
        ``whole``, its whole body. If no answer came, the record fails and :class:`_Unanswered` says what the
        client is told."""
        try:
            status, headers, answer = self._forward(path, json.dumps(body).encode(), method)
            record.status = status
            return status, headers, answer, answer.read() if status >= 400 or whole else None
        except ClientGone as exc:  # before the engine answered: it is dropped, and so stops
            self._drop_engine()
            self.close_connection = True
            fail(record, StreamCut(f"{record.label}: the client closed its connection before the engine "
                                   f"answered: {exc}"))
            raise _Unanswered(None, "") from None
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            timeout = isinstance(exc, TimeoutError)
            refused = (RequestTimeout if timeout else RequestRefused)(
                f"{record.label}: the engine did not answer: {type(exc).__name__}: {exc}")
            raise _Unanswered(504 if timeout else 502, str(fail(record, refused))) from None

    def _served_model(self) -> str | None:
        """The engine's name for the model the request goes to (None: the name the client sent)."""
        return self._route.model if self._route is not None else None

    def _embedding(self, path: str, payload: dict[str, Any], record: RequestRecord, *,
                   native: bool) -> Callable[[], None]:
        """Forward one embeddings request, timed end to end with its prompt tokens; Ollama's ``/api/embed`` goes
        as it is to Ollama, as ``/v1/embeddings`` to any other engine (its answer rebuilt in Ollama's shape). All
        but the answer's end is done here (that is returned)."""
        error = self._ollama_error if native else self._reply_error
        model = self._served_model()
        if model:
            payload["model"] = model
        engine_path, request = path, payload
        translated = native and self._engine_kind_or_none() not in ("ollama", None)
        if translated:
            engine_path = path[:path.rindex("/api/")] + "/v1/embeddings"
            request = {"input": payload.get("input"), **({"model": payload["model"]} if payload.get("model") else {})}
        try:
            status, headers, answer, data = self._ask_engine(engine_path, request, record, whole=True, method="POST")
        except _Unanswered as unanswered:
            return unanswered.reply(error)
        assert data is not None
        record.t_last = time.monotonic()
        self._done_with(answer)
        if status >= 400:
            message = _error_message(data)
            fail(record, HTTPStatusError(status, message))
            return partial(error, status, message)
        answered = _json_object(data) or {}
        usage = answered.get("usage")
        tokens = answered.get("prompt_eval_count", usage.get("prompt_tokens") if isinstance(usage, dict) else None)
        record.prompt_tokens = tokens if isinstance(tokens, int) else None
        if translated:
            rows = answered.get("data")
            vectors = [row.get("embedding") for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []
            data = json.dumps({"model": payload.get("model"), "prompt_eval_count": record.prompt_tokens or 0,
                               "embeddings": vectors,
                               "total_duration": int((record.t_last - record.t_send) * 1e9),
                               "load_duration": 0}).encode()
        return partial(self._reply, status, headers.get("Content-Type") or "application/json", data)

    def _engine_kind_or_none(self) -> str | None:
        try:
            return self.router.engine_kind()
        except _ENGINE_FAILED:
            return None

    def _ollama_error(self, status: int, message: str) -> None:
        """An error as Ollama answers one: ``{"error": message}``."""
        self._reply(status, "application/json", json.dumps({"error": message}).encode())

    def _engine_json(self, path: str) -> Any:
        """GET ``path`` (beside the engine's OpenAI routes) from the engine: its JSON, or a ValueError."""
        status, _headers, answer = self._forward(path, b"", "GET")
        data = answer.read()
        self._done_with(answer)
        if status >= 400:
            raise ValueError(f"GET {path}: HTTP {status}")
        return json.loads(data)

    def _native(self, route: ollama.OllamaRoute, path: str, payload: dict[str, Any],
                record: RequestRecord) -> Callable[[], None]:
        """Forward one ``/api/chat`` or ``/api/generate`` request, relayed to an engine that serves Ollama's API,
        translated for one that does not; its answer in Ollama's shapes, all but its end (that is returned)."""
        record.client_options = ollama.client_options(payload)
        client_streams = payload.get("stream") is not False  # Ollama streams unless told not to
        try:
            kind = self.router.engine_kind()
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            message = str(fail(record, RequestRefused(f"{record.label}: the engine did not answer: "
                                                      f"{type(exc).__name__}: {exc}")))
            return partial(self._ollama_error, 502, message)
        model = self._served_model() or str(payload.get("model") or "")
        native = kind == "ollama"
        if native:
            request, engine_path = payload, path
            request["model"], request["stream"] = model, True
        else:
            openai_path, request = ollama.openai_request(route, payload, llama_server=kind == "llama-server")
            request["stream"] = True
            self.router.prepare(request, chat=True, route=self._route)
            engine_path = path[:path.rindex("/api/")] + "/v1" + openai_path
        try:
            status, _headers, answer, data = self._ask_engine(engine_path, request, record, whole=False, method="POST")
        except _Unanswered as unanswered:
            return unanswered.reply(self._ollama_error)
        if data is not None:
            record.t_last = time.monotonic()
            self._done_with(answer)
            message = _error_message(data)
            fail(record, HTTPStatusError(status, message))
            return partial(self._reply, status, "application/json; charset=utf-8",
                           json.dumps({"error": message}).encode())
        relay = NdjsonRelay(self.wfile, passthrough=native, **self._framing()) if client_streams else None
        whole = ollama.NativeAnswer(route, with_tools=bool(payload.get("tools")))
        sink = relay.put if relay is not None else whole.add
        translation = None if native else ollama.Translation(route, model, record.t_send)

        def translate(chunk: dict[str, Any]) -> None:
            assert translation is not None
            for each in translation.add(chunk):
                sink(each)

        stream: ChatStream | OllamaStream = (
            ChatStream(record, status, on_chunk=translate) if translation is not None
            else OllamaStream(record, on_chunk=relay.saw if relay is not None else sink))
        error, complete = self._read_stream(answer, stream, relay)
        if translation is not None and complete:
            if error is None:
                try:
                    sink(translation.final(time.monotonic()))
                except ValueError as exc:  # tool call arguments that are not JSON: Ollama fails the request
                    error = fail(record, ProtocolError(f"{record.label}: {exc}"))
            if error is not None:
                sink({"error": _in_stream_error(error)})
        if relay is not None:
            if complete:
                return relay.end
            self.close_connection = True
            return lambda: None
        if error is not None:
            return partial(self._reply, 500, "application/json; charset=utf-8",
                           json.dumps({"error": _in_stream_error(error)}).encode())
        return partial(self._reply, 200, "application/json; charset=utf-8", json.dumps(whole.whole()).encode())


class _Unanswered(Exception):
    """No answer came from the engine: what the client is told (``status`` None: nothing, it left)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def reply(self, error: Callable[[int, str], None]) -> Callable[[], None]:
        """The end of the exchange, with ``error`` (the route's error shape) if the client is still there."""
        return (lambda: None) if self.status is None else partial(error, self.status, self.message)


def _lead_with(body: dict[str, Any], marker: str) -> None:
    """Put ``marker`` on a line before the text of the first message (a chat: OpenAI's or Ollama's) or of the
    prompt (a completion, Ollama's generate), in place."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        content = messages[0].get("content")
        if isinstance(content, str):
            messages[0] = {**messages[0], "content": f"{marker}\n{content}"}
        elif isinstance(content, list):  # OpenAI's content parts
            messages[0] = {**messages[0], "content": [{"type": "text", "text": marker}, *content]}
    elif isinstance(body.get("prompt"), str):
        body["prompt"] = f"{marker}\n{body['prompt']}"


def _completion_route(route: str | None) -> ollama.OllamaRoute | None:
    """Ollama's completion routes by name (``chat``, ``generate``); None for any other."""
    return "chat" if route == "chat" else "generate" if route == "generate" else None


def _after_prefix(target: str) -> str:
    """A request target's path after its channel prefix: ``/c3/v1/embeddings?x=1`` -> ``/v1/embeddings``."""
    return "/" + target.split("?")[0].lstrip("/").partition("/")[2]


def _error_message(data: bytes) -> str:
    """An engine's error answer as Ollama's one ``error`` string (OpenAI's object, Ollama's own, or its text)."""
    text = data.decode("utf-8", errors="replace")
    answer = _json_object(data) or {}
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return error if isinstance(error, str) else text[:500]


def _in_stream_error(error: RequestError) -> str:
    """What a failed answer tells its client: the engine's own words where it sent some."""
    return _error_message(error.body.encode()) if isinstance(error, HTTPStatusError) else str(error)


_BOM = b"\xef\xbb\xbf"  # json.loads takes a UTF-8 body that starts with one


def _model_named(payload: dict[str, Any] | None) -> str | None:
    """The model a request body names (Ollama's older clients say ``name``)."""
    if payload is None:
        return None
    name = payload.get("model") or payload.get("name")
    return name if isinstance(name, str) else None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None  # passed through: the engine answers a bad body with its own 400
    return value if isinstance(value, dict) else None


def _count_usage(record: RequestRecord, data: bytes) -> None:
    """An unstreamed answer's output tokens, from its ``usage``."""
    answer = _json_object(data)
    usage = answer.get("usage") if answer else None
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        record.n_out, record.n_out_source = usage["completion_tokens"], "usage"
