"""The recording proxy's HTTP side: its server, one handler per client connection (relays: :mod:`.proxy_relay`).

The standard library's threading HTTP server (keep-alive, so a client's pooled
connection stays one thread and one engine connection) and ``http.client`` to the
engine. :mod:`.proxy` says what is recorded and what is changed on the way.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ..errors import HTTPStatusError, RequestError, RequestRefused, RequestTimeout, StreamCut
from .assemble import CompletionAssembler
from .proxy_relay import ChunkedRelay, ClientGone, EventRelay
from .stream import STALE_CONNECTION_RETRIES, ChatStream, RequestRecord, fail

if TYPE_CHECKING:
    from .proxy import RecordingProxy

__all__ = ["LABEL_HEADER", "ProxyServer"]

LABEL_HEADER = "X-Vramcap-Label"
DEFAULT_LABEL = "chat"
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                            "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
                            LABEL_HEADER.lower()})
"""Hop-by-hop headers (RFC 9110 7.6.1), those we set ourselves, and ours."""
_RECORDED = ("/chat/completions", "/completions")
"""The endpoints whose requests are recorded (OpenAI's; llama-server and Ollama serve both under /v1)."""
_CLIENT_CHECK_S = 0.02
"""How often an unstreamed answer's client is checked for having left, while the engine streams (a select each)."""
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)
_ENGINE_FAILED = (OSError, http.client.HTTPException)


class ProxyServer(ThreadingHTTPServer):
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout_s)  # an idle kept-alive connection ends its thread
        # Headers, then each event, are small writes: without this, Nagle holds the next one back until the
        # client's (delayed) ACK of the last, tens of milliseconds on an answer the engine sent at once.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._engine: http.client.HTTPConnection | None = None
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

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request on stderr would drown the run's output

    def do_GET(self) -> None:
        try:
            self._relay()
        except OSError:  # the client went away while we answered: nothing left to tell it
            self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _relay(self) -> None:
        arrived = time.monotonic()
        channel, path = self.server.proxy.route(self.path)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._reply_error(411, "send the request body with a Content-Length")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if channel is None:
            self._reply_error(404, f"no vramcap channel at {self.path.split('?')[0][:100]}")
            return
        endpoint = path.split("?")[0]
        recorded = self.command == "POST" and endpoint.endswith(_RECORDED)
        payload = _json_object(body) if recorded else None
        if payload is None:
            self._plain(path, body)
            return
        record = RequestRecord(label=self.headers.get(LABEL_HEADER) or DEFAULT_LABEL, t_send=arrived)
        channel.begin(record)
        try:
            answer_end = self._completion(path, payload, record, chat=endpoint.endswith("/chat/completions"))
        finally:
            channel.end(record)
        # Only now the client gets the end of its answer: a graph that returns has every request in the records.
        answer_end()

    # ------------------------------------------------------------------ the engine

    def _forward(self, path: str, body: bytes) -> http.client.HTTPResponse:
        """Send the request on this connection's engine connection; once more if that one had gone stale."""
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _NOT_FORWARDED}
        headers.update({"Content-Length": str(len(body)), "Accept-Encoding": "identity"})
        for attempt in range(1 + STALE_CONNECTION_RETRIES):
            if self._engine is None:
                self._engine = self.server.proxy.connect()
            try:
                self._engine.request(self.command, path, body=body, headers=headers)
                return self._engine.getresponse()
            except _STALE:  # closed by the engine after its last answer, before this one (stream.py)
                self._drop_engine()
                if attempt == STALE_CONNECTION_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _drop_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()  # mid-answer, this is what tells the engine to stop generating
            self._engine = None

    def _plain(self, path: str, body: bytes) -> None:
        """Pass a request through unrecorded; a chunked answer (a stream) is relayed piece by piece as it comes."""
        try:
            response = self._forward(path, body)
            data = None if response.chunked else response.read()
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            self._reply_error(502, f"the engine did not answer: {type(exc).__name__}: {exc}")
            return
        content_type = response.getheader("Content-Type") or "application/json"
        if data is not None:
            self._reply(response.status, content_type, data)
            return
        relay = ChunkedRelay(self, content_type, response.status)
        try:
            while piece := response.read1(65536):
                relay.send(piece)
            relay.end()
        except (ClientGone, *_ENGINE_FAILED):  # one side is gone mid-answer: so is this exchange
            self._drop_engine()
            self.close_connection = True

    def _completion(self, path: str, payload: dict[str, Any], record: RequestRecord, *,
                    chat: bool) -> Callable[[], None]:
        """Forward one (chat) completion and relay or rebuild its answer, all but its end: that is returned."""
        client_streams = payload.get("stream") is True
        streamed, relay_usage = self.server.proxy.prepare(payload, chat=chat)
        try:
            response = self._forward(path, json.dumps(payload).encode())
            record.status = response.status
            data = response.read() if response.status >= 400 or not streamed else None
        except _ENGINE_FAILED as exc:
            self._drop_engine()
            timeout = isinstance(exc, TimeoutError)
            refused = (RequestTimeout if timeout else RequestRefused)(
                f"{record.label}: the engine did not answer: {type(exc).__name__}: {exc}")
            return partial(self._reply_error, 504 if timeout else 502, str(fail(record, refused)))
        if data is not None:
            record.t_last = time.monotonic()
            if response.status >= 400:
                fail(record, HTTPStatusError(response.status, data.decode("utf-8", errors="replace")))
            else:
                _count_usage(record, data)
            return partial(self._reply, response.status, response.getheader("Content-Type") or "application/json",
                           data)
        if client_streams:
            relay = EventRelay(self, relay_usage)
            error, complete = self._read_stream(response, record, relay.saw, relay)
            if complete:
                return relay.end  # the engine ended its answer: the client gets all of it, whatever we made of it
            self.close_connection = True  # the engine's stream was cut, or the client left: so is the exchange
            return lambda: None
        assembler = CompletionAssembler()
        error, _ = self._read_stream(response, record, assembler.add, None)
        if error is None:
            return partial(self._reply, 200, "application/json", json.dumps(assembler.completion()).encode())
        return partial(self._reply_error, 500 if isinstance(error, HTTPStatusError) else 502, str(error))

    def _read_stream(self, response: http.client.HTTPResponse, record: RequestRecord,
                     on_chunk: Callable[[dict[str, Any]], None], relay: EventRelay | None,
                     ) -> tuple[RequestError | None, bool]:
        """Time and count the engine's stream into ``record``, what each read brought relayed at once (to a
        streaming client): the error, if any, and whether the engine's answer was read to its end."""
        stream = ChatStream(record, response.status, on_chunk=on_chunk)
        error: RequestError | None = None
        complete = False
        pending = b""
        checked = 0.0
        try:
            # read1: what has arrived (an engine sends an event per HTTP chunk), split into lines here; a
            # readline per line costs twice the time in http.client's chunked reader.
            while True:
                data = response.read1(65536)
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
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

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
