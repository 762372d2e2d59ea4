"""Just enough HTTP/1.1 for the recording proxy, on blocking sockets: heads, bodies, chunks (RFC 9112).

The standard library's ``http.server`` and ``http.client`` read every head through the
``email`` package and check every header they send with regular expressions: measured,
most of what the proxy cost a request before its first token. A pass-through between a
client library and an OpenAI-compatible engine needs less: a start line, header fields,
a body framed by Content-Length or chunked transfer coding, or read until the connection
closes. Anything else (a line too long, a broken chunk size) is a :class:`WireError`, and
the connection it came on is closed.

h11 (a state machine that does no I/O) was tried in its place, on these same sockets: the
proxy then added 0.26-0.39 ms more before a first token on the 2-core VM (48-81% more at 8
events, 30-33% at 64; ``benchmarks/bench_proxy_overhead.py --baseline-ref``). This module
stays, and tests/load/test_wire.py holds it to h11's reading of the same bytes (hypothesis).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterable
from http import HTTPStatus

__all__ = ["MAX_HEADERS", "MAX_LINE", "NO_BODY_STATUSES", "BodyReader", "EngineConnection", "Headers", "SocketReader",
           "StaleConnection", "WireError", "encode_head", "persistent", "read_head", "reason"]

MAX_LINE = 65536
"""The longest start or header line read (``http.client`` has the same limit)."""
MAX_HEADERS = 100
NO_BODY_STATUSES = frozenset({204, 304})
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class WireError(Exception):
    """What came is not HTTP/1.1 as this module reads it."""


class StaleConnection(ConnectionError):
    """A kept-alive connection the peer had closed before it answered anything: safe to send again."""


class Headers:
    """Header fields in their order, looked up by name without regard to case."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._index = {name.lower(): value for name, value in reversed(fields)}  # the first of repeated fields

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._index.get(name.lower(), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for field, value in self._fields if field.lower() == wanted]

    def tokens(self, name: str) -> list[str]:
        """A comma-separated field's tokens (Connection, Transfer-Encoding), over all its lines, in lower case."""
        return [part.strip().lower() for value in self.get_all(name) for part in value.split(",") if part.strip()]

    def has_token(self, name: str, token: str) -> bool:
        return token in self.tokens(name)

    def content_length(self) -> int | None:
        """Content-Length, None when absent; a WireError when it is not one decimal number (or repeated
        differently: a message two readers would frame two ways)."""
        values = set(self.get_all("Content-Length"))
        if not values:
            return None
        value = values.pop()
        if values or not (value.isascii() and value.isdigit()):
            raise WireError(f"Content-Length {value[:40]!r}{' given twice, differently' if values else ''}")
        return int(value)


class SocketReader:
    """A socket's bytes, buffered here: lines, exact sizes, and what has already arrived (so a body's chunks
    that came in one packet are read without another system call)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self._buffer += data
        return bool(data)

    def readline(self) -> bytes:
        """One line with its end; what is left when the connection ends first; a WireError past MAX_LINE."""
        start = 0
        while (end := self._buffer.find(b"\n", start, MAX_LINE)) < 0:
            if len(self._buffer) >= MAX_LINE:
                raise WireError(f"a line longer than {MAX_LINE} bytes")
            start = len(self._buffer)
            if not self._fill():
                end = len(self._buffer) - 1
                break
        line = bytes(self._buffer[:end + 1])
        del self._buffer[:end + 1]
        return line

    def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer when the connection ends first."""
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read1(self, limit: int) -> bytes:
        """What has arrived, at most ``limit`` bytes; one receive when nothing has; b"" once the connection ended."""
        if not self._buffer:
            self._fill()
        data = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        return data

    def buffered_line(self) -> bytes | None:
        """The next line if all of it has arrived, without receiving."""
        end = self._buffer.find(b"\n")
        return None if end < 0 else bytes(self._buffer[:end + 1])

    def buffered(self) -> int:
        return len(self._buffer)


def read_head(reader: SocketReader) -> tuple[str, Headers] | None:
    """The start line and header fields of the next message; None if the connection ended before one began."""
    start = reader.readline()
    while start in (b"\r\n", b"\n"):  # empty lines before a request are ignored (RFC 9112 2.2)
        start = reader.readline()
    if not start:
        return None
    fields: list[tuple[str, str]] = []
    while True:
        line = reader.readline()
        if line in (b"\r\n", b"\n"):
            return start.decode("latin-1").rstrip("\r\n"), Headers(fields)
        if not line.endswith(b"\n"):
            raise WireError("the connection ended inside a message head")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise WireError(f"not a header field: {line[:80]!r}")
        fields.append((name, value.strip()))
        if len(fields) > MAX_HEADERS:
            raise WireError(f"more than {MAX_HEADERS} header fields")


def reason(status: int) -> str:
    """The reason phrase of ``status`` ("" for one the standard does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def persistent(version: str, headers: Headers) -> bool:
    """Whether a message leaves its connection open for the next (RFC 9112 9.3): HTTP/1.1 without Connection:
    close (an HTTP/1.0 peer's keep-alive is not taken up)."""
    return version == "HTTP/1.1" and not headers.has_token("Connection", "close")


def _status(answer: tuple[str, Headers]) -> tuple[str, int, Headers]:
    start, headers = answer
    version, _, rest = start.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise WireError(f"not an HTTP/1.1 status line: {start[:80]!r}")
    return version, int(code), headers


def encode_head(start: str, fields: Iterable[tuple[str, str]]) -> bytes:
    """A message head: the start line, ``Name: value`` lines, the empty line."""
    lines = [start, *(f"{name}: {value}" for name, value in fields), "", ""]
    return "\r\n".join(lines).encode("latin-1")


class BodyReader:
    """A message body as it arrives (:meth:`read1`): by Content-Length, chunked, or until the connection ends."""

    def __init__(self, reader: SocketReader, headers: Headers, *, bodiless: bool = False) -> None:
        """Framed as RFC 9112 6.3 says: no body (HEAD, 204, 304), chunked when that is the last transfer coding,
        until the connection ends under any other coding or without a length, else by Content-Length."""
        self._reader = reader
        codings = headers.tokens("Transfer-Encoding")
        self.chunked = not bodiless and codings[-1:] == ["chunked"]
        length = None if codings else headers.content_length()
        self._left: int | None
        if bodiless:
            self._left = 0
        elif self.chunked:
            self._left = None
        elif length is not None:
            self._left = length
        else:
            self._left = -1  # until the connection ends: it cannot carry another message
        # a length beside a coding is a message two readers could frame two ways: never reuse its connection
        self.reusable = self._left != -1 and not (codings and headers.get("Content-Length") is not None)
        self.complete = self._left == 0

    def read1(self) -> bytes:
        """What has arrived of the body (at least a whole chunk of a chunked one); b"" at its end."""
        if self.complete:
            return b""
        if self.chunked:
            data = self._chunk()
            while not self.complete and self._chunk_arrived():  # the chunks that came with it
                data += self._chunk()
            return data
        if self._left == -1:
            data = self._reader.read1(65536)
            self.complete = not data
            return data
        assert self._left is not None
        data = self._reader.read1(min(self._left, 65536))
        if not data:
            raise WireError(f"the connection ended {self._left} bytes before the end of the body")
        self._left -= len(data)
        self.complete = self._left == 0
        return data

    def read(self) -> bytes:
        """The rest of the body."""
        return b"".join(iter(self.read1, b""))

    def _chunk_arrived(self) -> bool:
        line = self._reader.buffered_line()
        if line is None:
            return False
        size = _chunk_size(line)
        return size == 0 or self._reader.buffered() >= len(line) + size + 2

    def _chunk(self) -> bytes:
        size = _chunk_size(self._reader.readline())
        if size == 0:
            while (line := self._reader.readline()) not in (b"\r\n", b"\n"):  # trailer fields, dropped
                if not line.endswith(b"\n"):
                    raise WireError("the connection ended inside the trailer")
            self.complete = True
            return b""
        data = self._reader.read(size)
        if len(data) < size or self._reader.readline() not in (b"\r\n", b"\n"):
            raise WireError("the connection ended inside a chunk")
        return data


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
    if not _HEX.fullmatch(digits):  # int(x, 16) would take "0x3", "1_0", "-3"
        raise WireError(f"not a chunk size: {line[:40]!r}")
    return int(digits, 16)


class EngineConnection:
    """One kept-alive connection to the engine (:meth:`open`): :meth:`send` a request, then read its :meth:`answer`."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        """Around a connected socket; ``host`` is the Host field of the requests sent on it."""
        self.sock = sock
        self._host = host
        self._reader = SocketReader(sock)
        self._kept_alive = False
        """An answer ended on it and it was kept: if the peer closed it meanwhile, that was no answer (stale)."""
        self._reused = False

    @classmethod
    def open(cls, host: str, port: int, *, tls: bool, timeout_s: float) -> EngineConnection:
        """Connect to ``host``:``port`` (TLS over it with ``tls``); small writes are sent at once (no Nagle)."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError):
            sock.close()
            raise
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal in Host is bracketed (RFC 9110 7.2)
        return cls(sock, name if port == (443 if tls else 80) else f"{name}:{port}")

    def send(self, method: str, target: str, fields: Iterable[tuple[str, str]], content: bytes) -> None:
        """Send a request. A StaleConnection when a kept-alive connection turned out closed."""
        head = encode_head(f"{method} {target} HTTP/1.1",
                           [("Host", self._host), *fields, ("Content-Length", str(len(content)))])
        self._reused, self._kept_alive = self._kept_alive, False
        try:
            self.sock.sendall(head + content)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if self._reused:
                raise StaleConnection(str(exc)) from None
            raise

    def answer(self, method: str) -> tuple[int, Headers, BodyReader]:
        """The answer's status, headers and body (unread). A StaleConnection when a kept-alive connection was
        closed before anything was answered."""
        try:
            answer = read_head(self._reader)
        except ConnectionResetError as exc:
            if self._reused:
                raise StaleConnection(str(exc)) from None
            raise
        if answer is None:
            if self._reused:
                raise StaleConnection("the engine had closed the connection")
            raise ConnectionError("the engine closed the connection without answering")
        version, status, headers = _status(answer)
        while 100 <= status < 200:  # interim answers (100 Continue): the final one follows
            answer = read_head(self._reader)
            if answer is None:
                raise ConnectionError("the engine closed the connection after an interim answer")
            version, status, headers = _status(answer)
        body = BodyReader(self._reader, headers, bodiless=method == "HEAD" or status in NO_BODY_STATUSES)
        body.reusable = body.reusable and persistent(version, headers)
        return status, headers, body

    def has_buffered(self) -> bool:
        """Part of the answer has arrived and waits here (or in TLS's buffer): reading it needs no waiting."""
        return self._reader.buffered() > 0 or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0)

    def answered(self, body: BodyReader) -> bool:
        """The answer was read to its end: whether this connection can carry the next request."""
        self._kept_alive = body.complete and body.reusable
        return self._kept_alive

    def close(self) -> None:
        self.sock.close()
