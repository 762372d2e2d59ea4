"""What the recording proxy writes to a client that reads a stream: chunked HTTP, an SSE event per chunk or an
NDJSON object per line (Ollama's native API).

:mod:`.forward` reads the engine; these send what it relays, headers with the first
piece, and turn a failed write into :class:`ClientGone` (the client closed its connection).
Both stream relays hold the answer's last event (``[DONE]``, Ollama's ``done`` object)
until :meth:`~ChunkedRelay.end`: the proxy records the request before its client sees it end.
"""

from __future__ import annotations

import json
from io import BufferedIOBase
from typing import Any, Protocol

from .wire import encode_head, reason

__all__ = ["ChunkedRelay", "ClientGone", "EventRelay", "NdjsonRelay", "StreamRelay"]


class StreamRelay(Protocol):
    """What the proxy's stream reader relays to: the engine's lines as they are read, a flush after each read."""

    def line(self, line: bytes) -> None: ...

    def flush(self) -> None: ...


class ClientGone(ConnectionError):
    """Writing to the client failed: it closed its connection (a timeout of its own, a cancelled task)."""


class ChunkedRelay:
    """An answer to the client as it comes, chunked, its head sent in the same write as the first piece (one
    system call less before the first token); a failed write is :class:`ClientGone`. An HTTP/1.0 client gets
    the pieces as they are, and the end of the connection ends the answer (``chunked=False``)."""

    def __init__(self, wfile: BufferedIOBase, content_type: str, status: int = 200, *, chunked: bool = True,
                 close: bool = False) -> None:
        self._wfile = wfile
        self._chunked = chunked
        fields = [("Content-Type", content_type), ("Cache-Control", "no-cache"),
                  *([("Transfer-Encoding", "chunked")] if chunked else []),
                  *([("Connection", "close")] if close or not chunked else [])]
        self._head: bytes | None = encode_head(f"HTTP/1.1 {status} {reason(status)}", fields)

    def send(self, piece: bytes, last: bool = False) -> None:
        data = piece
        if self._chunked:
            data = (b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"") + (b"0\r\n\r\n" if last else b"")
        if self._head is not None:
            data, self._head = self._head + data, None
        try:
            if data:
                self._wfile.write(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from exc

    def end(self, piece: bytes = b"") -> None:
        self.send(piece, last=True)


class _BufferedRelay(ChunkedRelay):
    """A stream relay that gathers what one engine read brought (:attr:`_ready`) and sends it in one write."""

    def __init__(self, wfile: BufferedIOBase, content_type: str, *, chunked: bool, close: bool) -> None:
        super().__init__(wfile, content_type, chunked=chunked, close=close)
        self._ready: list[bytes] = []

    def flush(self) -> None:
        """Send what was completed since the last flush (the engine's read that brought it is done)."""
        if self._ready:
            ready, self._ready = b"".join(self._ready), []
            self.send(ready)

    def _take_ready(self) -> bytes:
        ready, self._ready = b"".join(self._ready), []
        return ready


class EventRelay(_BufferedRelay):
    """The engine's SSE stream to a streaming client: the events that arrived in one read go out in one write
    (:meth:`flush`) as they complete; the final ``[DONE]`` waits for :meth:`end`."""

    def __init__(self, wfile: BufferedIOBase, relay_usage: bool, *, chunked: bool = True, close: bool = False) -> None:
        super().__init__(wfile, "text/event-stream", chunked=chunked, close=close)
        self._relay_usage = relay_usage
        self._lines: list[bytes] = []
        self._skip = False
        self._held: bytes | None = None

    def saw(self, chunk: dict[str, Any]) -> None:
        """The current event's object: the usage-only chunk is left out unless the client asked for it."""
        if not self._relay_usage and chunk.get("choices") == [] and "usage" in chunk:
            self._skip = True

    def line(self, line: bytes) -> None:
        self._lines.append(line)
        if line.strip() or self._held is not None:
            return
        event, skip, self._lines, self._skip = b"".join(self._lines), self._skip, [], False
        if event.replace(b" ", b"").startswith(b"data:[DONE]"):
            self._held = event  # sent by end(), once the request is recorded
        elif not skip:
            self._ready.append(event)

    def end(self, piece: bytes = b"") -> None:
        """The rest of the stream (``[DONE]`` and anything after it) and the end of the HTTP body."""
        super().end(self._take_ready() + (self._held or b"") + b"".join(self._lines) + piece)


class NdjsonRelay(_BufferedRelay):
    """Ollama's NDJSON to a streaming client: the engine's own lines (``passthrough``), or objects the proxy made
    (:meth:`put`: a translated answer); the ``done`` object and what follows wait for :meth:`end`."""

    def __init__(self, wfile: BufferedIOBase, *, passthrough: bool, chunked: bool = True, close: bool = False) -> None:
        super().__init__(wfile, "application/x-ndjson", chunked=chunked, close=close)
        self._passthrough = passthrough
        self._held: list[bytes] = []
        self._holding = False

    def saw(self, answer: dict[str, Any]) -> None:
        """The object of the line about to be relayed: from the ``done`` one on, lines are held."""
        if answer.get("done") is True:
            self._holding = True

    def put(self, answer: dict[str, Any]) -> None:
        """An object of the proxy's making, sent at the next flush (the ``done`` one at the end).

        Non-ASCII text goes out escaped: the ollama client reads lines with httpx's ``iter_lines``, which also
        breaks a line at U+0085, U+2028 and U+2029 (``str.splitlines``), and a model's text may hold any of them
        (Go's json.Marshal, Ollama's encoder, escapes only the last two). Escaped, every object stays one line."""
        (self._held if answer.get("done") is True else self._ready).append(json.dumps(answer).encode() + b"\n")

    def line(self, line: bytes) -> None:
        if self._passthrough and line.strip():
            (self._held if self._holding else self._ready).append(line)

    def end(self, piece: bytes = b"") -> None:
        super().end(self._take_ready() + b"".join(self._held) + piece)
