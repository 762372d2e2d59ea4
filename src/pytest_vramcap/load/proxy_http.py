"""The recording proxy's HTTP side: its server, one handler per client connection (relays: :mod:`.proxy_relay`).

The standard library's threading TCP server (keep-alive, so a client's pooled
connection stays one thread and one engine connection) speaking HTTP/1.1 through
:mod:`.wire` on both sides: ``http.server`` and ``http.client`` parsed every head with
the ``email`` package, most of the proxy's cost before a first token.
:mod:`.proxy` says what is recorded and what is changed on the way.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import HTTPStatusError, RequestError, RequestRefused, RequestTimeout, StreamCut
from . import wire
from .assemble import CompletionAssembler
from .proxy_relay import ChunkedRelay, ClientGone, EventRelay
from .stream import STALE_CONNECTION_RETRIES, ChatStream, RequestRecord, fail
from .wire import BodyReader, EngineConnection, Headers, SocketReader, WireError

if TYPE_CHECKING:
    from .proxy import RecordingProxy

__all__ = ["LABEL_HEADER", "ProxyServer"]

LABEL_HEADER = "X-Vramcap-Label"
DEFAULT_LABEL = "chat"
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                            "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding", "expect",
                            LABEL_HEADER.lower()})
"""Hop-by-hop headers (RFC 9110 7.6.1), those we set ourselves, and ours."""
_RECORDED = ("/chat/completions", "/completions")
"""The endpoints whose requests are recorded (OpenAI's; llama-server and Ollama serve both under /v1)."""
_CLIENT_CHECK_S = 0.02
"""How often an unstreamed answer's client is checked for having left, while the engine streams (a select each)."""
_ENGINE_FAILED = (OSError, WireError)


class ProxyServer(socketserver.ThreadingTCPServer):
    """Serves :class:`_Handler` for ``proxy``; tracks its handlers so that stopping cuts their connections."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: RecordingProxy, idle_timeout_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy
        self.idle_timeout_s = idle_timeout_s
        self._open: set[_Handler] = set()
        self._open_lock = threading.Lock()

    def track(self, handler: _Handler, is_open: bool) -> None:
        with self._open_lock:
            (self._open.add if is_open else self._open.discard)(handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection reset or cut (a client that left, our own stop) is no error; anything else is printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut every handler's client connection and engine connection: a handler waiting on either wakes up."""
        with self._open_lock:
            handlers = list(self._open)
        for handler in handlers:
            engine = handler.engine_socket()
            for connection in (handler.connection, *([engine] if engine is not None else [])):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: its requests one after another (keep-alive), each relayed to the engine."""

    server: ProxyServer
    rbufsize = 0  # requests are read through a SocketReader of ours: the buffered rfile would steal bytes

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout_s)  # an idle kept-alive connection ends its thread
        # Heads, then each event, are small writes: without this, Nagle holds the next one back until the
        # client's (delayed) ACK of the last, tens of milliseconds on an answer the engine sent at once.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._engine: EngineConnection | None = None
        self.reader = SocketReader(self.connection)
        self.command = ""
        self.headers = Headers([])
        self.close_connection = False
        self.server.track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self, False)
            self._drop_engine()

    def engine_socket(self) -> socket.socket | None:
        engine = self._engine
        return engine.sock if engine is not None else None

    def handle(self) -> None:
        try:
            while not self.close_connection:
                try:
                    request = wire.read_head(self.reader)
                except WireError as exc:
                    self.close_connection = True
                    self._reply_error(400, f"not an HTTP/1.1 request: {exc}")
                    return
                if request is None:
                    return  # the client closed its kept-alive connection
                self._exchange(*request)
        except OSError:  # the client went away (or stayed idle past the timeout): nothing left to tell it
            return

    def _exchange(self, start: str, headers: Headers) -> None:
        arrived = time.monotonic()
        parts = start.split(" ")
        method, target, version = parts if len(parts) == 3 else ("", "", "")
        self.command, self.headers = method, headers
        self.close_connection = version != "HTTP/1.1" or headers.has_token("Connection", "close")
        length = headers.get("Content-Length") or "0"
        if not method or not version.startswith("HTTP/1.") or not length.isdigit():
            self.close_connection = True
            self._reply_error(400, f"not an HTTP/1.1 request: {start[:100]!r}")
            return
        if headers.has_token("Transfer-Encoding", "chunked"):
            self.close_connection = True
            self._reply_error(411, "send the request body with a Content-Length")
            return
        if (headers.get("Expect") or "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.reader.read(int(length)) if int(length) > 0 else b""
        if len(body) < int(length):
            self.close_connection = True
            return  # the client left in the middle of its request
        channel, path = self.server.proxy.route(target)
        if channel is None:
            self._reply_error(404, f"no vramcap channel at {target.split('?')[0][:100]}")
            return
        endpoint = path.split("?")[0]
        recorded = method == "POST" and endpoint.endswith(_RECORDED)
        payload = _json_object(body) if recorded else None
        if payload is None:
            self._plain(path, body)
            return
        record = RequestRecord(label=headers.get(LABEL_HEADER) or DEFAULT_LABEL, t_send=arrived)
        channel.begin(record)
        try:
            answer_end = self._completion(path, payload, record, chat=endpoint.endswith("/chat/completions"))
        finally:
            channel.end(record)
        # Only now the client gets the end of its answer: a graph that returns has every request in the records.
        answer_end()

    # ------------------------------------------------------------------ the engine

    def _forward(self, path: str, content: bytes) -> tuple[int, Headers, BodyReader]:
        """Send the request on this connection's engine connection; once more if that one had gone stale."""
        fields = [(name, value) for name, value in self.headers.items() if name.lower() not in _NOT_FORWARDED]
        fields.append(("Accept-Encoding", "identity"))
        for attempt in range(1 + STALE_CONNECTION_RETRIES):
            if self._engine is None:
                self._engine = self.server.proxy.connect()
            try:
                return self._engine.request(self.command, path, fields, content)
            except wire.StaleConnection:  # closed by the engine after its last answer, before this one (stream.py)
                self._drop_engine()
                if attempt == STALE_CONNECTION_RETRIES:
                    raise
        raise AssertionError("unreachable")

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
            self._reply(status, content_type, data)
            return
        relay = ChunkedRelay(self.wfile, content_type, status)
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
        streamed, relay_usage = self.server.proxy.prepare(payload, chat=chat)
        try:
            status, headers, answer = self._forward(path, json.dumps(payload).encode())
            record.status = status
            data = answer.read() if status >= 400 or not streamed else None
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            timeout = isinstance(exc, TimeoutError)
            refused = (RequestTimeout if timeout else RequestRefused)(
                f"{record.label}: the engine did not answer: {type(exc).__name__}: {exc}")
            return partial(self._reply_error, 504 if timeout else 502, str(fail(record, refused)))
        if data is not None:
            record.t_last = time.monotonic()
            self._done_with(answer)
            if status >= 400:
                fail(record, HTTPStatusError(status, data.decode("utf-8", errors="replace")))
            else:
                _count_usage(record, data)
            return partial(self._reply, status, headers.get("Content-Type") or "application/json", data)
        if client_streams:
            relay = EventRelay(self.wfile, relay_usage)
            error, complete = self._read_stream(answer, status, record, relay.saw, relay)
            if complete:
                return relay.end  # the engine ended its answer: the client gets all of it, whatever we made of it
            self.close_connection = True  # the engine's stream was cut, or the client left: so is the exchange
            return lambda: None
        assembler = CompletionAssembler()
        error, _ = self._read_stream(answer, status, record, assembler.add, None)
        if error is None:
            return partial(self._reply, 200, "application/json", json.dumps(assembler.completion()).encode())
        return partial(self._reply_error, 500 if isinstance(error, HTTPStatusError) else 502, str(error))

    def _read_stream(self, answer: BodyReader, status: int, record: RequestRecord,
                     on_chunk: Callable[[dict[str, Any]], None], relay: EventRelay | None,
                     ) -> tuple[RequestError | None, bool]:
        """Time and count the engine's stream into ``record``, what each read brought relayed at once (to a
        streaming client): the error, if any, and whether the engine's answer was read to its end."""
        stream = ChatStream(record, status, on_chunk=on_chunk)
        error: RequestError | None = None
        complete = False
        pending = b""
        checked = 0.0
        try:
            while True:  # a chunk at a time (an engine sends an event per chunk), split into lines here
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
                    relay.flush()  # a client that left makes this fail
                elif now - checked > _CLIENT_CHECK_S:  # an unstreamed answer: nothing is written to the client yet
                    checked = now
                    if self._client_left():  # nobody reads the rest: closing the engine connection stops it
                        raise ClientGone("the connection was closed")
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
                                                f"{self.server.proxy.read_timeout_s:.0f} s"))
        except _ENGINE_FAILED as exc:
            error = fail(record, StreamCut(f"{record.label}: the engine's stream was cut after {record.n_chunks} "
                                           f"chunks: {type(exc).__name__}: {exc}"))
        if not complete:
            self._drop_engine()  # an unread or cut answer: this engine connection is done
        return error, complete

    def _client_left(self) -> bool:
        """Has the client closed its connection? Readable with nothing to read is the end of its side."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------ replies

    def _reply(self, status: int, content_type: str, data: bytes) -> None:
        fields = [("Content-Type", content_type), ("Content-Length", str(len(data))),
                  *([("Connection", "close")] if self.close_connection else [])]
        self.wfile.write(wire.encode_head(f"HTTP/1.1 {status} {wire.reason(status)}", fields) +
                         (data if self.command != "HEAD" else b""))

    def _reply_error(self, status: int, message: str) -> None:
        """An OpenAI-style error object, as the engines send one."""
        body = {"error": {"code": status, "message": message, "type": "vramcap_proxy_error"}}
        self._reply(status, "application/json", json.dumps(body).encode())


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
