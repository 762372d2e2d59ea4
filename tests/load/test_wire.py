"""The proxy's HTTP/1.1 reading and writing (load/proxy/wire.py) on real socket pairs; the same bytes read by
wire.py and by h11 (hypothesis: both must see the same messages); and what a client that speaks HTTP plainly
(curl-style heads, HTTP/1.0, pipelining, garbage) gets from the proxy."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    persistent,
    read_head,
)
from tests.helpers import read_request
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
            engine = EngineConnection.open(host, port, tls=False, timeout_s=10)
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
    engine = EngineConnection.open("127.0.0.1", port, tls=False, timeout_s=10)
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
    # closed without an answer: not stale
    fresh = EngineConnection.open("127.0.0.1", port, tls=False, timeout_s=10)
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


@pytest.mark.parametrize(("fields", "status"), [
    ([("Content-Length", "5"), ("Content-Length", "6")], b"400"),
    ([("Content-Length", "\u00b2")], b"400"),  # a superscript two
    ([("Content-Length", "-1")], b"400"),
    ([("Name ", "spaced")], b"400"),
    ([("Transfer-Encoding", "chunked"), ("Content-Length", "2")], b"411"),
])
def test_heads_the_proxy_refuses(fields: list[tuple[str, str]], status: bytes) -> None:
    with RecordingProxy("http://127.0.0.1:9") as proxy:
        answer = raw_exchange(proxy.port, encode_head("POST /c1/v1/chat/completions HTTP/1.1", fields) + b"{}")
    assert answer.startswith(b"HTTP/1.1 " + status) and b"Connection: close\r\n" in answer
    assert answer.count(b"\r\n\r\n") == 1  # one answer, then the connection is closed


@contextmanager
def raw_engine(answers: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """An engine of one connection that reads a request and sends the next of ``answers`` (raw bytes), in turn,
    then waits for the other side to close. Yields its port and the requests it read."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            for answer in answers:
                request = read_request(connection)
                if request is None:
                    return
                seen.append(request)
                connection.sendall(answer)
            connection.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(10)


def test_bodiless_and_pipelined_answers_keep_the_connection() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n",  # to HEAD
               b"HTTP/1.1 204 No Content\r\n\r\n",
               b"HTTP/1.1 304 Not Modified\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
               b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"]
    # engine_kind given: the proxy does not ask the engine what it is (this one answers only what the test scripts)
    with raw_engine(answers) as (port, seen), \
            RecordingProxy(f"http://127.0.0.1:{port}", engine_kind="openai") as proxy:
        base = proxy.channel().base_url.split(str(proxy.port), 1)[1]
        client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)  # one connection, kept alive
        for method, status in (("HEAD", 200), ("DELETE", 204), ("GET", 304)):
            client.request(method, f"{base}/models")
            answer = client.getresponse()
            assert (answer.status, answer.read()) == (status, b"")
            # A HEAD answer says the length of what it does not carry; a 204 or 304 says none (RFC 9110 8.6).
            assert answer.getheader("Content-Length") == ("9" if method == "HEAD" else None)
        assert client.sock is not None  # still the first connection
        client.sock.sendall(encode_head(f"GET {base}/models HTTP/1.1", [("Host", "x")]) * 2)  # two in one write
        data = b""
        while not data.endswith(b"[]"):
            data += client.sock.recv(65536)
        assert data.count(b"HTTP/1.1 200 OK\r\n") == 2 and data.index(b"{}") < data.index(b"[]")
        client.close()
    assert [request.split(b" ", 1)[0] for request in seen] == [b"HEAD", b"DELETE", b"GET", b"GET", b"GET"]


# ------------------------------------------------------------------ wire.py reads what h11 reads

class Segments:
    """A socket's stand-in for the readers: each receive gives (at most) the next segment, b"" after the last."""

    def __init__(self, segments: list[bytes]) -> None:
        self._segments = list(segments)
        self.sent = b""

    def recv(self, size: int) -> bytes:
        if not self._segments:
            return b""
        segment = self._segments.pop(0)
        if len(segment) > size:
            self._segments.insert(0, segment[size:])
        return segment[:size]

    def sendall(self, data: bytes) -> None:
        self.sent += data


_FRAMING = {"content-length", "transfer-encoding", "connection", "host"}
NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,11}", fullmatch=True).filter(lambda name: name.lower() not in _FRAMING)
VALUES = st.from_regex(r"([!-~]([ !-~]{0,16}[!-~])?)?", fullmatch=True)
SPACES = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def fields(draw: st.DrawFn, max_size: int = 4) -> list[tuple[str, str, str]]:
    """Header fields: (name, value, the line as sent, with optional whitespace around the value)."""
    return [(name, value, f"{name}:{draw(SPACES)}{value}{draw(SPACES)}")
            for name, value in draw(st.lists(st.tuples(NAMES, VALUES), max_size=max_size))]


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A chunked body (sizes in either case, extensions, trailer fields) and what it carries."""
    pieces = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=4))
    extension = st.sampled_from(["", ";a=b", ';name="v w"', "; x"])
    data = b"".join(format(len(piece), draw(st.sampled_from(["x", "X", "04x"]))).encode() +
                    draw(extension).encode() + b"\r\n" + piece + b"\r\n" for piece in pieces)
    trailer = "".join(line + "\r\n" for _, _, line in draw(fields(max_size=2)))
    return data + f"0{draw(extension)}\r\n{trailer}\r\n".encode(), b"".join(pieces)


def head_bytes(start: str, lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in [start, *lines, ""]).encode("latin-1")


@st.composite
def answers(draw: st.DrawFn) -> tuple[list[str], bytes, list[tuple[int, list[tuple[str, str]], bytes, bool]]]:
    """Answers on one connection, each to a request of its own method: bodies by length, chunked, none (HEAD,
    204, 304), or until the connection ends (the last only); interim answers first; HTTP/1.0; Connection: close.
    The methods, the bytes, and what a reader must see: (status, fields, body, the connection goes on) per
    answer, up to the first after which the connection does not go on."""
    methods: list[str] = []
    data = b""
    expected: list[tuple[int, list[tuple[str, str]], bytes, bool]] = []
    count = draw(st.integers(1, 3))
    for index in range(count):
        method = draw(st.sampled_from(["GET", "POST", "HEAD"]))
        status = draw(st.sampled_from([200, 201, 204, 304, 404, 500]))
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
        bodiless = method == "HEAD" or status in (204, 304)
        framing = draw(st.sampled_from(["length", "chunked", "none"] if index == count - 1 else ["length", "chunked"]))
        for _ in range(draw(st.integers(0, 2))):
            data += head_bytes(f"HTTP/1.1 {draw(st.sampled_from(['100 Continue', '103 Early Hints']))}",
                               [line for _, _, line in draw(fields(max_size=2))])
        listed = draw(fields())
        sent = [(name.lower(), value) for name, value, _ in listed]
        lines = [line for _, _, line in listed]
        body, content = b"", b""
        if framing == "length":
            content = draw(st.binary(max_size=60))
            sent.append(("content-length", str(len(content))))
            body = b"" if bodiless else content
        elif framing == "chunked":
            body, content = draw(chunked())
            sent.append(("transfer-encoding", "chunked"))
            body = b"" if bodiless else body
        else:
            content = draw(st.binary(max_size=60))
            body = b"" if bodiless else content
        lines += [f"{name.title()}: {value}" for name, value in sent[len(listed):]]
        close = draw(st.sampled_from([None, "close", "keep-alive"]))
        if close:
            sent.append(("connection", close))
            lines.append(f"Connection: {close}")
        goes_on = version == "HTTP/1.1" and close != "close" and (bodiless or framing != "none")
        methods.append(method)
        data += head_bytes(f"{version} {status} {draw(st.sampled_from(['', 'OK', 'Whatever it says']))}".rstrip()
                           if draw(st.booleans()) else f"{version} {status} ", lines) + body
        if not expected or expected[-1][3]:
            expected.append((status, sent, b"" if bodiless else content, goes_on))
    return methods, data, expected


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted({point % (len(data) + 1) for point in points}), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges) if end > start]


def read_answers_with_wire(methods: list[str], segments: list[bytes]) -> list[tuple]:
    engine = EngineConnection(Segments(segments), "engine")  # type: ignore[arg-type]
    seen: list[tuple] = []
    for method in methods:
        engine.send(method, "/", [], b"")
        status, headers, body = engine.answer(method)
        content = body.read()
        seen.append((status, [(name.lower(), value) for name, value in headers.items()], content,
                     engine.answered(body)))
        if not seen[-1][3]:
            break
    return seen


def read_answers_with_h11(methods: list[str], segments: list[bytes]) -> list[tuple]:
    connection = h11.Connection(h11.CLIENT)
    left = list(segments)
    seen: list[tuple] = []
    for method in methods:
        connection.send(h11.Request(method=method, target="/", headers=[("Host", "engine")]))
        connection.send(h11.EndOfMessage())
        status, headers, content, closed = 0, [], b"", False
        while not isinstance(event := connection.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                closed = not left  # the end of the connection ends this answer (or h11 says it is cut)
                connection.receive_data(left.pop(0) if left else b"")
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers]
            elif isinstance(event, h11.Data):
                content += event.data
        goes_on = not closed and connection.our_state is h11.DONE and connection.their_state is h11.DONE
        seen.append((status, headers, content, goes_on))
        if not goes_on:
            break
        connection.start_next_cycle()
    return seen


@settings(max_examples=300, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow])
@given(answers(), st.lists(st.integers(0, 10_000), max_size=6))
def test_wire_reads_answers_as_h11_does(answered: tuple[list[str], bytes, list[tuple]], points: list[int]) -> None:
    methods, data, expected = answered
    segments = cut(data, points)  # the same bytes, arriving in pieces anywhere
    assert read_answers_with_wire(methods, segments) == read_answers_with_h11(methods, segments) == expected


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str, str, list[tuple[str, str]], bytes, bool]]]:
    """Requests on one connection, as a client sends them (Host, bodies by Content-Length), HTTP/1.1 or 1.0,
    Connection: close or not: the bytes, and what a reader must see up to the first that ends the connection."""
    data = b""
    expected: list[tuple[str, str, str, list[tuple[str, str]], bytes, bool]] = []
    for _ in range(draw(st.integers(1, 3))):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]))
        target = draw(st.from_regex(r"/[A-Za-z0-9._~/?=&%-]{0,24}", fullmatch=True))
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
        listed = draw(fields())
        sent = [("host", "engine"), *((name.lower(), value) for name, value, _ in listed)]
        lines = ["Host: engine", *(line for _, _, line in listed)]
        content = draw(st.binary(max_size=60))
        if content or draw(st.booleans()):
            sent.append(("content-length", str(len(content))))
            lines.append(f"Content-Length: {len(content)}")
        close = draw(st.sampled_from([None, "close", "keep-alive"]))
        if close:
            sent.append(("connection", close))
            lines.append(f"Connection: {close}")
        data += head_bytes(f"{method} {target} {version}", lines) + content
        if not expected or expected[-1][5]:
            expected.append((method, target, version, sent, content, version == "HTTP/1.1" and close != "close"))
    return data, expected


def read_requests_with_wire(segments: list[bytes]) -> list[tuple]:
    reader = SocketReader(Segments(segments))  # type: ignore[arg-type]
    seen: list[tuple] = []
    while (message := read_head(reader)) is not None:  # what ClientHandler._exchange reads
        start, headers = message
        method, target, version = start.split(" ")
        content = reader.read(headers.content_length() or 0)
        seen.append((method, target, version, [(name.lower(), value) for name, value in headers.items()], content,
                     persistent(version, headers)))
        if not seen[-1][5]:
            break
    return seen


def read_requests_with_h11(segments: list[bytes]) -> list[tuple]:
    connection = h11.Connection(h11.SERVER)
    left = list(segments)
    seen: list[tuple] = []
    request: h11.Request | None = None
    content = b""
    while not isinstance(event := connection.next_event(), h11.ConnectionClosed):
        if event is h11.NEED_DATA:
            connection.receive_data(left.pop(0) if left else b"")
        elif isinstance(event, h11.Request):
            request, content = event, b""
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            goes_on = connection.their_state is h11.DONE
            seen.append((request.method.decode(), request.target.decode(), f"HTTP/{request.http_version.decode()}",
                         [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers],
                         content, goes_on))
            connection.send(h11.Response(status_code=204, headers=[]))
            connection.send(h11.EndOfMessage())
            if not goes_on:
                break
            connection.start_next_cycle()
    return seen


@settings(max_examples=300, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.lists(st.integers(0, 10_000), max_size=6))
def test_wire_reads_requests_as_h11_does(sent: tuple[bytes, list[tuple]], points: list[int]) -> None:
    data, expected = sent
    segments = cut(data, points)
    assert read_requests_with_wire(segments) == read_requests_with_h11(segments) == expected
