"""The proxy's HTTP/1.1 reading and writing (load/wire.py) on real socket pairs, and what a client that speaks it
plainly (curl-style heads, HTTP/1.0, garbage) gets from the proxy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pytest_vramcap.load.proxy import RecordingProxy
from pytest_vramcap.load.wire import (
    MAX_HEADERS,
    MAX_LINE,
    BodyReader,
    EngineConnection,
    Headers,
    SocketReader,
    StaleConnection,
    WireError,
    encode_head,
    read_head,
)
from tests.scripted_engine import ScriptedEngine


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, SocketReader]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    yield theirs, SocketReader(ours)
    ours.close()
    theirs.close()


def test_a_head_and_a_chunked_body_with_extensions_and_trailers(pair: tuple[socket.socket, SocketReader]) -> None:
    peer, reader = pair
    peer.sendall(b"\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
                 b"5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: dropped\r\n\r\nNEXT")
    start, headers = read_head(reader) or ("", Headers([]))
    assert start == "HTTP/1.1 200 OK" and headers.get("x-a") == "1" and headers.items()[-1] == ("x-a", "2")
    body = BodyReader(reader, headers)
    assert body.chunked and body.read1() == b"hello!"  # both chunks had arrived: one read
    assert body.read1() == b"" and body.complete and body.reusable
    assert reader.read(4) == b"NEXT"  # the next message starts where the body ended


def test_bodies_by_length_by_closing_and_none(pair: tuple[socket.socket, SocketReader]) -> None:
    peer, reader = pair
    peer.sendall(b"abcdefgh")
    by_length = BodyReader(reader, Headers([("Content-Length", "3")]))
    assert by_length.read() == b"abc" and by_length.complete and by_length.reusable
    assert BodyReader(reader, Headers([("Content-Length", "9")]), bodiless=True).read() == b""  # HEAD, 204, 304
    peer.shutdown(socket.SHUT_WR)
    until_closed = BodyReader(reader, Headers([]))
    assert until_closed.read() == b"defgh" and until_closed.complete and not until_closed.reusable


@pytest.mark.parametrize(("data", "complaint"), [
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header field"),
    (b"HTTP/1.1 200 OK\r\nName : spaced\r\n\r\n", "not a header field"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", "more than 100 header fields"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * MAX_LINE + b"\r\n\r\n", "a line longer than"),
    (b"HTTP/1.1 200 OK\r\nX: y\r\n", "ended inside a message head"),
])
def test_heads_that_are_not_http(data: bytes, complaint: str) -> None:
    ours, peer = socket.socketpair()
    ours.settimeout(10)

    def send() -> None:  # from a thread: more than a socket buffer holds
        try:
            peer.sendall(data)
            peer.shutdown(socket.SHUT_WR)
        except OSError:  # the reader gave up first and closed its end
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    with pytest.raises(WireError, match=complaint):
        read_head(SocketReader(ours))
    ours.close()
    sender.join(10)
    peer.close()


@pytest.mark.parametrize(("data", "complaint"), [
    (b"zz\r\n", "not a chunk size"),
    (b"5\r\nhel", "ended inside a chunk"),
])
def test_broken_chunks(pair: tuple[socket.socket, SocketReader], data: bytes, complaint: str) -> None:
    peer, reader = pair
    peer.sendall(data)
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(WireError, match=complaint):
        BodyReader(reader, Headers([("Transfer-Encoding", "chunked")])).read()


def test_a_closed_connection_ends_the_head_reading_quietly(pair: tuple[socket.socket, SocketReader]) -> None:
    peer, reader = pair
    peer.close()
    assert read_head(reader) is None


def serve_once(answers: list[bytes]) -> tuple[int, list[bytes]]:
    """A listener that answers each connection's first request with the next of ``answers`` (raw), then closes
    or keeps it, as the answer says; the requests it read."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        for answer in answers:
            connection, _ = listener.accept()
            seen.append(connection.recv(65536))
            connection.sendall(answer)
            connection.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def test_an_engine_connection_skips_interim_answers_and_knows_stale_from_refused() -> None:
    port, seen = serve_once([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                             b""])
    engine = EngineConnection("127.0.0.1", port, tls=False, timeout_s=10)
    status, _, body = engine.request("POST", "/v1/x", [("X-Key", "v")], b"{}")
    assert (status, body.read()) == (201, b"ok")
    assert seen[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:") and b"X-Key: v\r\n" in seen[0]
    assert seen[0].endswith(b"Content-Length: 2\r\n\r\n{}")
    assert engine.answered(body)  # kept: then the peer closed it (serve_once does), which is stale, not refused
    with pytest.raises(StaleConnection):
        engine.request("GET", "/v1/models", [], b"")
    engine.close()
    fresh = EngineConnection("127.0.0.1", port, tls=False, timeout_s=10)  # closed without an answer: not stale
    with pytest.raises(ConnectionError) as excinfo:
        fresh.request("GET", "/v1/models", [], b"")
    assert not isinstance(excinfo.value, StaleConnection)
    fresh.close()


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        chunks = []
        while data := connection.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def test_what_plain_clients_get_from_the_proxy() -> None:
    events = [{"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]}]
    with ScriptedEngine(events) as upstream, RecordingProxy(upstream.url) as proxy:
        channel = proxy.channel()
        path = channel.base_url.split(str(proxy.port), 1)[1]
        body = b'{"messages": [], "stream": true}'
        # curl sends Expect: 100-continue for larger bodies, and HTTP/1.0 has no keep-alive: closed after it
        answer = raw_exchange(proxy.port, encode_head(f"POST {path}/chat/completions HTTP/1.0", [
            ("Expect", "100-continue"), ("Content-Length", str(len(body)))]) + body)
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert b'"content": "hi"' in answer and answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
        assert channel.records[0].ok and channel.records[0].n_out == 1
        garbage = raw_exchange(proxy.port, b"HELLO\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in garbage
