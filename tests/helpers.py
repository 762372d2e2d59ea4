"""Helpers for tests that must check only what they started themselves (the suite runs under -n 2)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_vramcap.engines.binary import find_llama_server
from pytest_vramcap.errors import EngineNotFoundError


def _engine() -> tuple[Path | None, str]:
    try:
        return find_llama_server(), ""
    except EngineNotFoundError as exc:  # pragma: no cover - CI installs the engine
        return None, f"needs llama-server: {exc}"


LLAMA_SERVER, _NO_ENGINE = _engine()
needs_llama_server = pytest.mark.skipif(LLAMA_SERVER is None, reason=_NO_ENGINE)
"""``pytestmark`` of the modules that drive a real llama-server."""


def sigint_reaches_python() -> None:
    """``preexec_fn`` of children a test sends Ctrl-C: a process started as a shell's background job (``cmd &``,
    as some CI runners do) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``, a path unique to one test."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@contextmanager
def misbehaving_server(drip_s: float | None) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts and then never answers (``drip_s`` None) or sends an
    HTTP answer one byte every ``drip_s`` seconds, forever. Yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000
        for byte in answer:
            if stop.wait(drip_s if drip_s is not None else 3600):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        time.sleep(0.3)
        for conn in connections:
            conn.close()
        listener.close()


def read_request(conn: socket.socket) -> bytes | None:
    """One HTTP request's bytes from ``conn`` (its head, and its body when it has a Content-Length); None if the
    peer closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    while lengths and len(body) < int(lengths[0]):
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def canned_server(body: bytes, content_type: str = "text/event-stream") -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers every request with ``body`` and closes. Yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                read_request(conn)
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                        f"Connection: close\r\n\r\n").encode()
                try:
                    conn.sendall(head + body)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()
