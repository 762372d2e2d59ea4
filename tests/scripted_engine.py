"""An OpenAI-compatible engine that answers from a script: what a real llama-server will not do on purpose.

The recording proxy's tests need engines that misbehave (an event that is not JSON, a
stream that is slow or never ends) or that show what they received; the proxy benchmark
needs one that answers at once, so that the difference it measures is the proxy's alone.
Everything else runs against the real llama-server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "ScriptedEngine", "sse"]


def sse(event: dict[str, Any] | bytes) -> bytes:
    """One SSE event: an object as its JSON, bytes as they are (an event that is not JSON)."""
    return b"data: " + (event if isinstance(event, bytes) else json.dumps(event).encode()) + b"\n\n"


@dataclass
class Answer:
    """What the engine did for one streamed request."""

    written: int = 0
    """Events written (``[DONE]`` not counted)."""
    client_left: bool = False
    """A write failed: the other side closed the connection before the answer ended."""
    ended: threading.Event = field(default_factory=threading.Event)


class ScriptedEngine:
    """Streams ``events`` (one HTTP chunk each, ``delay_s`` apart, then ``data: [DONE]`` unless ``done`` is False)
    to a chat completion that asks to stream, and ``whole`` to one that does not; records each request's body and
    each streamed :class:`Answer`. ``ollama``: the events are Ollama's NDJSON lines (no ``[DONE]``), and
    ``GET /api/version`` answers as Ollama's does (anything else GET is a 404, as on llama-server). ``gather``
    streamed requests are held until all of them have arrived (so they are in flight together, whatever the
    clock); ``head_delay_s`` holds every streamed answer back before it starts (a queue, a long prefill). A
    context manager that serves on 127.0.0.1 from a thread."""

    def __init__(self, events: list[dict[str, Any] | bytes], *, whole: dict[str, Any] | None = None,
                 delay_s: float = 0.0, done: bool = True, gather: int = 1, head_delay_s: float = 0.0,
                 port: int = 0, ollama: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[Answer] = []
        together = threading.Barrier(gather)
        if ollama:
            pieces = [json.dumps(event).encode() + b"\n" if isinstance(event, dict) else event for event in events]
            done = False
        else:
            pieces = [sse(event) for event in events]
        whole_body = json.dumps(whole or {}).encode()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                found = ollama and self.path == "/api/version"
                data = b'{"version":"0.33.0"}' if found else b"File Not Found"
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                engine.bodies.append(body)
                if not body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(whole_body)))
                    self.end_headers()
                    self.wfile.write(whole_body)
                    return
                answer = Answer()
                engine.answers.append(answer)
                together.wait(timeout=60)
                time.sleep(head_delay_s)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson" if ollama else "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in pieces + ([b"data: [DONE]\n\n"] if done else []):
                        if delay_s and answer.written:
                            time.sleep(delay_s)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        answer.written += piece != b"data: [DONE]\n\n"
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    answer.client_left = True
                    self.close_connection = True
                finally:
                    answer.ended.set()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # hundreds of clients may connect at once

            def get_request(self) -> tuple[socket.socket, Any]:  # small writes go out at once (no Nagle wait)
                connection, address = super().get_request()
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return connection, address

        self._server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> ScriptedEngine:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
