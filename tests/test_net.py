"""URLs checked once, credentials never shown, OLLAMA_HOST read as Ollama reads it, deadlines that hold."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pytest_vramcap.errors import ServerUnreachable
from pytest_vramcap.net import astream_lines, checked_url, fetch, ollama_host_url, redact, stream_lines
from tests.helpers import canned_server, misbehaving_server


@pytest.mark.parametrize("value, url", [
    # Ollama's envconfig.Host(): no scheme -> http on 11434; http:// -> 80; https:// -> 443; empty -> loopback.
    (None, "http://127.0.0.1:11434"), ("", "http://127.0.0.1:11434"), ("127.0.0.1", "http://127.0.0.1:11434"),
    ("0.0.0.0", "http://0.0.0.0:11434"), (":11435", "http://127.0.0.1:11435"), ("gpu-box", "http://gpu-box:11434"),
    ("gpu-box:8080", "http://gpu-box:8080"), ("http://gpu-box", "http://gpu-box:80"),
    ("https://ollama.example.com", "https://ollama.example.com:443"), ("[::1]:11435", "http://[::1]:11435"),
    ("::1", "http://[::1]:11434"), ("gpu-box:99999", "http://gpu-box:11434"),
    ("https://u:p@ollama.example.com", "https://u:p@ollama.example.com:443"),
])
def test_ollama_host(value: str | None, url: str) -> None:
    assert ollama_host_url(value) == url


@pytest.mark.parametrize("url, shown", [
    ("http://user:secret@host:1/x", "http://***@host:1/x"), ("http://host:1", "http://host:1"),
    ("https://token@host", "https://***@host"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize("text", ["http://[::1", "ftp://host", "http://", "http://exa mple.com", "http://host:99999"])
def test_checked_url_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        checked_url(text)


@pytest.mark.parametrize("drip_s", [None, 0.2], ids=["silent", "drip"])
def test_fetch_ends_at_its_deadline(drip_s: float | None) -> None:
    with misbehaving_server(drip_s) as port, pytest.raises(ServerUnreachable, match="no complete answer within 1 s"):
        fetch("GET", f"http://u:secret@127.0.0.1:{port}/", deadline_s=1)


def test_fetch_reads_a_prompt_answer() -> None:
    with canned_server(b'{"ok": true}', "application/json") as url:
        assert fetch("GET", url, deadline_s=5).json() == {"ok": True}


def test_stream_lines_split_at_newlines_only_and_keep_characters_whole() -> None:
    # U+2028 is three bytes (e2 80 a8): sent a byte at a time, the character is cut across reads; CRLF ends a line too
    body = "data: {\"a\": \"x\u2028y\u00e9\"}\r\n\nlast without newline".encode()
    pieces = [body[i:i + 1] for i in range(len(body))]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=iter(pieces)))
    with httpx.Client(transport=transport) as client, client.stream("GET", "http://engine.test/") as response:
        lines = list(stream_lines(response))
    assert lines == ['data: {"a": "x\u2028y\u00e9"}', "", "last without newline"]

    async def read() -> list[str]:
        async def pieces_async():  # type: ignore[no-untyped-def]
            for piece in pieces:
                yield piece
        atransport = httpx.MockTransport(lambda request: httpx.Response(200, content=pieces_async()))
        async with httpx.AsyncClient(transport=atransport) as aclient, \
                aclient.stream("GET", "http://engine.test/") as aresponse:
            return [line async for line in astream_lines(aresponse)]

    assert asyncio.run(read()) == lines
