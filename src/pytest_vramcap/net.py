"""HTTP the way every stage needs it: URLs checked once, credentials never shown, requests with a deadline.

* :func:`checked_url` - a server URL httpx can use, or ValueError (``http://[::1`` is
  ``httpx.InvalidURL``, which is not an ``httpx.HTTPError`` and escaped handlers before).
* :func:`redact` - the URL as messages, verdicts and reports show it: ``user:secret@``
  becomes ``***@``. Requests keep the credentials (httpx sends them as Basic auth).
* :func:`ollama_host_url` - ``OLLAMA_HOST`` read the way Ollama reads it.
* :func:`host`, :func:`http_url`, :func:`base_url`, :func:`ollama_url` - the option parsers for addresses
  (``ValueError`` on bad input, as every parser in :mod:`.parsers`).
* :func:`fetch` - one request that ends within its deadline however slowly the server
  answers: httpx's timeouts are per read, so a server dripping a byte a second never
  trips them.
* :func:`stream_lines`, :func:`astream_lines` - the lines of a streamed body (SSE or NDJSON), split at
  ``\n`` only. httpx's ``iter_lines`` also splits at U+0085, U+2028 and U+2029 (``str.splitlines``),
  which llama-server writes unescaped inside JSON strings (its encoder escapes only what JSON requires)
  and a synthesized model's random tokens produce: split there, one event became two broken halves.

httpx is imported inside the functions: the pytest plugin imports this module's
callers at start-up and must stay cheap to load.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .defaults import DEFAULT_OLLAMA_URL
from .errors import NothingListening, ServerUnreachable

if TYPE_CHECKING:
    import httpx

__all__ = ["astream_lines", "base_url", "checked_url", "fetch", "host", "http_url", "ollama_host_url", "ollama_url",
           "redact", "stream_lines"]

_OLLAMA_PORT = DEFAULT_OLLAMA_URL.rsplit(":", 1)[1]


def checked_url(text: str) -> str:
    """An http(s) URL with a host that httpx accepts, without a trailing slash; ValueError otherwise."""
    import httpx

    url = text.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"{redact(url)!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"must be an http(s) URL with a host, got {redact(url)!r}")
    # httpx takes ports past 65535 and percent-encodes a space in a host; both fail only at connect time.
    try:
        host(parsed.host)
    except ValueError:
        raise ValueError(f"{redact(url)!r} has no valid host name") from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{redact(url)!r}: port {parsed.port} is not 1..65535")
    return url


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def ollama_host_url(value: str | None) -> str:
    """``OLLAMA_HOST`` as Ollama's ``envconfig.Host()`` reads it (envconfig/config.go).

    No scheme means http on port 11434; ``http://HOST`` means port 80 and
    ``https://HOST`` 443; an empty value is 127.0.0.1:11434; a bad port falls back
    to the default.
    """
    text = (value or "").strip()
    scheme, sep, hostport = text.partition("://")
    if not sep:
        scheme, hostport, default_port = "http", text, _OLLAMA_PORT
    else:
        default_port = {"http": "80", "https": "443"}.get(scheme, _OLLAMA_PORT)
    hostport, _, path = hostport.partition("/")
    # Ollama has no credentials in OLLAMA_HOST; a URL for Ollama behind an auth proxy has them.
    userinfo, at, hostport = hostport.rpartition("@")
    host, port = _split_host_port(hostport)
    if host is None:
        host, port = (hostport.strip("[]") or "127.0.0.1"), default_port
    host = host or "127.0.0.1"  # ":11434": Go dials an empty host as the local machine
    if not (port or "").isdigit() or int(port or "0") > 65535:
        port = default_port
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{userinfo}{at}{host}:{port}" + (f"/{path}" if path else "")


def _split_host_port(hostport: str) -> tuple[str | None, str | None]:
    """Go's net.SplitHostPort: ``host:port`` or ``[v6]:port``; (None, None) when there is no port."""
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        return (host, rest[1:]) if bracket and rest.startswith(":") else (None, None)
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return None, None


def fetch(method: str, url: str, *, deadline_s: float, json: Any = None) -> httpx.Response:
    """Send one request and read the whole answer within ``deadline_s``, or raise ServerUnreachable.

    The request runs on a daemon thread with the client's own timeouts as a second
    guard; at the deadline the client is closed, which ends the thread at its next read.
    """
    import httpx

    client = httpx.Client(timeout=httpx.Timeout(deadline_s))
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = client.request(method, url, json=json)
        except Exception as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=send, name="vramcap-fetch", daemon=True)
    worker.start()
    worker.join(deadline_s)
    client.close()
    error = outcome.get("error")
    # The client's own timeout is the same deadline: whichever guard fires first, it is one expiry.
    if worker.is_alive() or isinstance(error, httpx.TimeoutException):
        raise ServerUnreachable(f"{redact(url)}: no complete answer within {deadline_s:g} s")
    if isinstance(error, httpx.ConnectError):  # refused, or a host that does not resolve (not a slow connect)
        raise NothingListening(f"{redact(url)}: {error}") from None
    if isinstance(error, (httpx.HTTPError, httpx.InvalidURL)):
        raise ServerUnreachable(f"{redact(url)}: {type(error).__name__}: {error}") from None
    if error is not None:
        raise error
    response: httpx.Response = outcome["response"]
    return response


class _LineSplitter:
    """Bytes in, whole lines out: split at b"\\n" (a trailing "\\r" dropped, as SSE allows CRLF) before decoding,
    so no character is cut; UTF-8 never puts 0x0A inside a multi-byte sequence. Only the new bytes are searched, so
    a long line arriving in many pieces costs its length once."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[str]:
        lines = []
        start = len(self._pending)
        self._pending += data
        while (end := self._pending.find(b"\n", start)) >= 0:
            lines.append(self._text(bytes(self._pending[:end])))
            del self._pending[:end + 1]
            start = 0
        return lines

    def rest(self) -> list[str]:
        return [self._text(bytes(self._pending))] if self._pending else []

    @staticmethod
    def _text(line: bytes) -> str:
        return line.removesuffix(b"\r").decode("utf-8", errors="replace")


def stream_lines(response: httpx.Response) -> Iterator[str]:
    """The lines of a streamed response, split at ``\\n`` only (see the module notes)."""
    splitter = _LineSplitter()
    for data in response.iter_bytes():
        yield from splitter.feed(data)
    yield from splitter.rest()


async def astream_lines(response: httpx.Response) -> AsyncIterator[str]:
    """:func:`stream_lines` for an async response."""
    splitter = _LineSplitter()
    async for data in response.aiter_bytes():
        for line in splitter.feed(data):
            yield line
    for line in splitter.rest():
        yield line


def host(text: str) -> str:
    """An address to bind: an IP or a host name, never empty (an empty host binds every interface)."""
    import ipaddress
    import re

    name = text.strip()
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}"
                        r"[A-Za-z0-9])?)*", name):
        raise ValueError(f"must be an IP address or a host name, got {text[:60]!r}")
    return name

def http_url(text: str) -> str:
    """An http(s) URL with a host (credentials allowed: they are sent, never shown)."""
    if not text.strip().startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL, got {redact(text)[:80]!r}")
    return checked_url(text)

def base_url(text: str) -> str:
    """A server address as users write it (``host:port`` or a URL) as a checked URL without a trailing slash."""
    url = text.strip().rstrip("/")
    return checked_url(url if url.startswith(("http://", "https://")) else "http://" + url)

def ollama_url(text: str) -> str:
    """An Ollama address, read like ``OLLAMA_HOST``: ``127.0.0.1`` means ``http://127.0.0.1:11434``."""
    if not text.strip():
        raise ValueError("must not be empty")
    return checked_url(ollama_host_url(text))

