"""An attached server is waited for while it loads, not while nothing listens (issue 28): a refused URL or one
whose host does not resolve ends the wait after NOTHING_LISTENING_GRACE_S, one that answers 503 gets the whole
startup timeout."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_vramcap.engines.attached import AttachedServer
from pytest_vramcap.engines.base import free_port
from pytest_vramcap.errors import NothingListening, ServerUnreachable


@contextmanager
def loading_server() -> Iterator[int]:
    """A server that accepts connections and answers every health check 503 (llama-server loading its model)."""
    class Loading(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loading)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("url", [f"http://127.0.0.1:{free_port()}", "http://vramcap-no-such-host.invalid:8080"],
                         ids=["refused", "unresolvable"])
def test_nothing_listening_ends_the_wait_long_before_the_startup_timeout(url: str) -> None:
    with pytest.raises(NothingListening, match=r"^nothing listens at http://.* for 5 s\): "):
        AttachedServer(url, startup_timeout_s=3600).start()


def test_a_server_that_accepts_and_says_it_is_loading_gets_the_startup_timeout() -> None:
    with loading_server() as port, pytest.raises(ServerUnreachable, match=r"no healthy server at .* within 2 s") \
            as caught:
        AttachedServer(f"http://127.0.0.1:{port}", startup_timeout_s=2).start()
    assert not isinstance(caught.value, NothingListening)
