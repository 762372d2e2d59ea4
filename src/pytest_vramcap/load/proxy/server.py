"""The recording proxy's client side: a threading TCP server, and a handler per client connection that reads
its requests (HTTP/1.1 through :mod:`.wire`) and frames the answers. What a request becomes is
:mod:`.forward`'s; what the proxy is, its :class:`~.router.Router` (the handler never imports the proxy).
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import sys
import threading
import time
from typing import Any

from . import wire
from .router import Router
from .wire import Headers, SocketReader

__all__ = ["MAX_BODY", "ClientHandler", "ProxyServer"]

MAX_BODY = 64 * 2**20
"""The largest request body taken (a chat request with a long context is a few MiB)."""


class ProxyServer(socketserver.ThreadingTCPServer):
    """Serves ``handler`` for ``router``; tracks its handlers so that stopping cuts their connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    """The listen backlog: socketserver's 5 reset connections when 200 agents connected at once (issue 28)."""

    def __init__(self, router: Router, handler: type[ClientHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.router = router
        self._open: set[ClientHandler] = set()
        self._open_lock = threading.Lock()
        self.stopping = False
        """Set before the connections are cut: a handler that connects to the engine after that closes it."""

    def track(self, handler: ClientHandler, is_open: bool) -> None:
        with self._open_lock:
            (self._open.add if is_open else self._open.discard)(handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection reset or cut (a client that left, our own stop) is no error; anything else is printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut every handler's client connection and engine connection: a handler waiting on either wakes up."""
        self.stopping = True
        with self._open_lock:
            handlers = list(self._open)
        for handler in handlers:
            engine = handler.engine_socket()
            for connection in (handler.connection, *([engine] if engine is not None else [])):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class ClientHandler(socketserver.StreamRequestHandler):
    """One client connection: its requests one after another (keep-alive), each read and checked here and
    handed to :meth:`relay`; the answers' framing and the replies the proxy makes itself."""

    server: ProxyServer
    rbufsize = 0  # requests are read through a SocketReader of ours: the buffered rfile would steal bytes

    def setup(self) -> None:
        super().setup()
        self.router = self.server.router
        self.connection.settimeout(self.router.idle_timeout_s)  # an idle kept-alive connection ends its thread
        # Heads, then each event, are small writes: without this, Nagle holds the next one back until the
        # client's (delayed) ACK of the last, tens of milliseconds on an answer the engine sent at once.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = SocketReader(self.connection)
        self.command = self.version = ""
        self.headers = Headers([])
        self.close_connection = False
        self.server.track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self, False)

    def engine_socket(self) -> socket.socket | None:
        """The connection this handler holds to the engine, if any (cut when the proxy stops)."""
        return None

    def relay(self, target: str, body: bytes, arrived: float) -> None:
        """Answer the request in :attr:`command` / :attr:`headers` for ``target``."""
        raise NotImplementedError

    def handle(self) -> None:
        try:
            while not self.close_connection:
                try:
                    request = wire.read_head(self.reader)
                except wire.WireError as exc:
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
        self.command, self.headers, self.version = method, headers, version
        self.close_connection = not wire.persistent(version, headers)
        if not method or not version.startswith("HTTP/1."):
            self.close_connection = True
            self._reply_error(400, f"not an HTTP/1.1 request: {start[:100]!r}")
            return
        try:
            length = headers.content_length() or 0
        except wire.WireError as exc:
            self.close_connection = True
            self._reply_error(400, f"the request's {exc}")
            return
        if headers.get("Transfer-Encoding") is not None:  # one framing only, the one both sides read the same
            self.close_connection = True
            self._reply_error(411, "send the request body with a Content-Length (no Transfer-Encoding)")
            return
        if length > MAX_BODY:  # refused before a 100 Continue: the client need not send what will not be read
            self.close_connection = True
            self._reply_error(413, f"a request body of {length} bytes: the proxy takes {MAX_BODY} at most")
            return
        if version == "HTTP/1.1" and (headers.get("Expect") or "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.reader.read(length) if length > 0 else b""
        if len(body) < length:
            self.close_connection = True
            return  # the client left in the middle of its request
        self.relay(target, body, arrived)

    def _client_left(self) -> bool:
        """Has the client closed its connection? Readable with nothing to read is the end of its side (a client
        that only half-closed after sending its request looks the same, and is taken as gone); reset, too."""
        try:
            poller = select.poll()  # not select(): it refuses descriptors past 1023, which a load test reaches
            poller.register(self.connection, select.POLLIN)
            return bool(poller.poll(0)) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):  # reset, or closed by our own stop
            return True

    # ------------------------------------------------------------------ replies

    def _framing(self) -> dict[str, bool]:
        """How a relayed answer is framed for this client: chunked unless it speaks HTTP/1.0."""
        return {"chunked": self.version == "HTTP/1.1", "close": self.close_connection}

    def _reply(self, status: int, content_type: str, data: bytes, length: int | None = None) -> None:
        """A whole answer; ``length`` is the Content-Length of a HEAD answer, whose body is not sent. A 204 or 304
        has no body and says no length (RFC 9110 8.6 forbids one on a 204; a 304's would describe a body it never
        carries)."""
        bodiless = status in wire.NO_BODY_STATUSES
        fields = [*([] if bodiless else [("Content-Type", content_type),
                                         ("Content-Length", str(len(data) if length is None else length))]),
                  *([("Connection", "close")] if self.close_connection else [])]
        self.wfile.write(wire.encode_head(f"HTTP/1.1 {status} {wire.reason(status)}", fields) +
                         (data if self.command != "HEAD" and not bodiless else b""))

    def _reply_error(self, status: int, message: str) -> None:
        """An OpenAI-style error object, as the engines send one."""
        body = {"error": {"code": status, "message": message, "type": "vramcap_proxy_error"}}
        self._reply(status, "application/json", json.dumps(body).encode())
