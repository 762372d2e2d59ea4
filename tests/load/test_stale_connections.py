"""A pooled keep-alive connection the server closes before answering is tried again on a new one, once.

llama-server closes some kept-alive connections after a streamed answer (see STALE_CONNECTION_RETRIES);
this server does the same on purpose: it answers the first request of a connection and closes the
connection at the second without a byte. Both clients must finish every request: the gevent one
Locust users run (in a child process, since importing Locust patches a process) retries itself;
httpx's pool, under the asyncio client, already sends such a request again on a new connection (this
test guards that); so does the recording proxy, which keeps an engine connection per client connection.
A connection that breaks after the status line stays a cut stream, never sent twice.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pytest_vramcap.load.measure.client import ChatClient, ChatRequest
from pytest_vramcap.load.measure.record import StreamCut
from pytest_vramcap.load.proxy.channels import RecordingProxy
from tests.helpers import read_request

REPO = Path(__file__).parents[2]
EVENTS = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in (
    {"choices": [{"delta": {"content": "x"}, "finish_reason": None}]},
    {"choices": [{"delta": {}, "finish_reason": "length"}], "usage": {"completion_tokens": 1}})) + b"data: [DONE]\n\n"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
          b"Keep-Alive: timeout=5, max=100\r\n\r\n" + f"{len(EVENTS):x}\r\n".encode() + EVENTS + b"\r\n0\r\n\r\n")


@contextmanager
def closing_server(*, cut_after_status: bool = False) -> Iterator[tuple[str, dict[str, int]]]:
    """Answers a connection's first request; at its second, closes without a byte (or, with
    ``cut_after_status``, answers every first request with a status line and then closes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {"connections": 0, "requests": 0}

    def serve(conn: socket.socket) -> None:
        with conn:
            for index in range(2):
                if read_request(conn) is None:
                    return
                if index == 1:
                    return  # the kept-alive connection closes before the second answer
                seen["requests"] += 1
                if cut_after_status:
                    conn.sendall(ANSWER.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
                    return
                conn.sendall(ANSWER)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            seen["connections"] += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        listener.close()


REQUEST = ChatRequest([{"role": "user", "content": "hi"}], 1, label="probe")


def test_the_asyncio_client_sends_again_on_a_new_connection() -> None:
    async def three(url: str) -> list[int]:
        async with ChatClient(url, read_timeout_s=5, total_timeout_s=10, max_connections=1) as client:
            return [(await client.chat(REQUEST)).n_out for _ in range(3)]

    with closing_server() as (url, seen):
        assert asyncio.run(three(url)) == [1, 1, 1]
    assert seen == {"connections": 3, "requests": 3}  # each answered once: nothing was sent twice


def test_a_connection_cut_after_the_status_line_is_not_sent_again() -> None:
    async def one(url: str) -> None:
        async with ChatClient(url, read_timeout_s=5, total_timeout_s=10) as client:
            await client.chat(REQUEST)

    with closing_server(cut_after_status=True) as (url, seen), pytest.raises(StreamCut):
        asyncio.run(one(url))
    assert seen["requests"] == 1


GEVENT_CLIENT = """
import sys
from pytest_vramcap.load.measure.client import ChatRequest
from pytest_vramcap.locust.users import GeventChatClient
client = GeventChatClient(sys.argv[1], concurrency=1, read_timeout_s=5, total_timeout_s=10)
request = ChatRequest([{"role": "user", "content": "hi"}], 1, label="probe")
print([client.chat(request).n_out for _ in range(3)])
"""


def test_the_gevent_client_sends_again_on_a_new_connection() -> None:
    with closing_server() as (url, seen):
        result = subprocess.run([sys.executable, "-c", GEVENT_CLIENT, url], capture_output=True, text=True,
                                timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[1, 1, 1]"
    assert seen == {"connections": 3, "requests": 3}


def test_the_proxy_sends_again_on_a_new_engine_connection() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with closing_server() as (url, seen), RecordingProxy(url, engine_kind="openai") as proxy, \
            httpx.Client(timeout=10) as client:
        channel = proxy.channel()  # one client connection, kept alive: one engine connection, reused
        answers = [client.post(channel.base_url + "/chat/completions", json=body) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert all(answer.text.endswith("data: [DONE]\n\n") for answer in answers)
    assert [record.ok and record.n_out for record in channel.records] == [1, 1, 1]
    assert seen == {"connections": 3, "requests": 3}  # each answered once: nothing was sent twice


def test_the_proxy_does_not_send_again_a_request_cut_after_the_status_line() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with closing_server(cut_after_status=True) as (url, seen), RecordingProxy(url, engine_kind="openai") as proxy:
        channel = proxy.channel()
        answer = httpx.post(channel.base_url + "/chat/completions", json=body, timeout=10)
    assert answer.status_code == 502 and "the engine's stream was cut" in answer.json()["error"]["message"]
    [record] = channel.records
    assert record.error_kind == "connection" and seen["requests"] == 1
