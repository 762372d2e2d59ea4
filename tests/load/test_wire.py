"""The proxy's HTTP/1.1 reading and writing (load/wire.py) on real socket pairs, and what a client that speaks it
plainly (curl-style heads, HTTP/1.0, garbage) gets from the proxy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pytest_vramcap.load.proxy.channels import RecordingProxy
from pytest_vramcap.load.proxy.server import MAX_BODY
from pytest_vramcap.load.proxy.wire import (
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


def test_framing_rules(pair: tuple[socket.socket, SocketReader]) -> None:
    _, reader = pair
    head_of_a_chunked_answer = BodyReader(reader, Headers([("Transfer-Encoding", "chunked")]), bodiless=True)
    assert not head_of_a_chunked_answer.chunked and head_of_a_chunked_answer.read() == b""  # HEAD, 204, 304
    both = BodyReader(reader, Headers([("Transfer-Encoding", "chunked"), ("Content-Length", "5")]))
    assert both.chunked and not both.reusable  # framed two ways: the chunks win, the connection is not reused
    gzip_only = BodyReader(reader, Headers([("Transfer-Encoding", "gzip"), ("Content-Length", "5")]))
    assert not gzip_only.chunked and not gzip_only.reusable  # not chunked last: the end of the connection ends it
    for lengths in (["5", "6"], ["\u00b2"], ["-1"]):  # repeated differently, a superscript two, negative
        with pytest.raises(WireError, match="Content-Length"):
            Headers([("Content-Length", value) for value in lengths]).content_length()
    assert Headers([("Content-Length", "7"), ("content-length", "7")]).content_length() == 7
    assert Headers([("Connection", "keep-alive"), ("connection", "Upgrade, close")]).has_token("Connection", "close")


def test_hosts_and_ports_in_the_host_field() -> None:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            listener = socket.create_server((host, 0), family=family)
        except OSError:
            pytest.skip(f"no {host} on this machine")
        port = listener.getsockname()[1]
        with listener:
            engine = EngineConnection(host, port, tls=False, timeout_s=10)
            engine.send("GET", "/v1/models", [], b"")
            connection, _ = listener.accept()
            with connection:
                head = connection.recv(65536)
            engine.close()
        name = f"[{host}]" if ":" in host else host
        assert f"Host: {name}:{port}\r\n".encode() in head  # IPv6 bracketed (RFC 9110 7.2)


@pytest.mark.parametrize(("data", "complaint"), [
    (b"0x3\r\nabc\r\n", "not a chunk size"),
    (b"-3\r\n", "not a chunk size"),
    (b"0\r\nTrailer: cut", "ended inside the trailer"),
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
    engine.send("POST", "/v1/x", [("X-Key", "v")], b"{}")
    status, _, body = engine.answer("POST")
    assert (status, body.read()) == (201, b"ok")
    assert seen[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:") and b"X-Key: v\r\n" in seen[0]
    assert seen[0].endswith(b"Content-Length: 2\r\n\r\n{}")
    assert engine.answered(body)  # kept: then the peer closed it (serve_once does), which is stale, not refused
    with pytest.raises(StaleConnection):
        engine.send("GET", "/v1/models", [], b"")
        engine.answer("GET")
    engine.close()
    fresh = EngineConnection("127.0.0.1", port, tls=False, timeout_s=10)  # closed without an answer: not stale
    with pytest.raises(ConnectionError) as excinfo:
        fresh.send("GET", "/v1/models", [], b"")
        fresh.answer("GET")
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
        # curl sends Expect: 100-continue for larger bodies; Connection: close is answered and then closed
        answer = raw_exchange(proxy.port, encode_head(f"POST {path}/chat/completions HTTP/1.1", [
            ("Expect", "100-continue"), ("Connection", "close"), ("Content-Length", str(len(body)))]) + body)
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in answer and b"Transfer-Encoding: chunked\r\n" in answer
        assert b'"content": "hi"' in answer and answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
        # HTTP/1.0 knows neither 100 Continue nor chunks: the stream as it is, ended by closing the connection
        answer = raw_exchange(proxy.port, encode_head(f"POST {path}/chat/completions HTTP/1.0", [
            ("Expect", "100-continue"), ("Content-Length", str(len(body)))]) + body)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding" not in answer
        assert answer.endswith(b"\r\n\r\ndata: " + answer.split(b"\r\n\r\ndata: ", 1)[1])
        assert answer.endswith(b"data: [DONE]\n\n") and b"Connection: close\r\n" in answer
        assert [record.ok and record.n_out for record in channel.records] == [1, 1]
        garbage = raw_exchange(proxy.port, b"HELLO\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in garbage
        for smuggled, status in ((("Content-Length", "0"), ("Content-Length", "24")), b"400"), \
                                ((("Transfer-Encoding", "identity"), ("Transfer-Encoding", "chunked")), b"411"):
            answer = raw_exchange(proxy.port, encode_head(f"POST {path}/chat/completions HTTP/1.1", smuggled) +
                                  b"GET /c1/v1/models HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 " + status) and answer.count(b"HTTP/1.1 ") == 1  # one answer only
        too_big = raw_exchange(proxy.port, encode_head(f"POST {path}/chat/completions HTTP/1.1", [
            ("Content-Length", str(MAX_BODY + 1)), ("Expect", "100-continue")]))
        assert too_big.startswith(b"HTTP/1.1 413 ")  # refused at once, no 100 Continue first
