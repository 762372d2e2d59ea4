"""URLs checked once, credentials never shown, OLLAMA_HOST read as Ollama reads it, deadlines that hold."""

from __future__ import annotations

import pytest

from pytest_vramcap.errors import ServerUnreachable
from pytest_vramcap.net import checked_url, fetch, ollama_host_url, redact
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
