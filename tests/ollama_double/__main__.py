"""``python -m tests.ollama_double serve``: the double's ``ollama serve`` (see __init__.py)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from .runner import log
from .server import VERSION, DoubleServer, Scheduler


def ollama_host() -> tuple[str, int]:
    """envconfig/config.go Host: OLLAMA_HOST as [scheme://]host[:port], default 127.0.0.1:11434."""
    raw = os.environ.get("OLLAMA_HOST", "").strip() or "127.0.0.1:11434"
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    return parts.hostname or "127.0.0.1", parts.port or 11434


def serve() -> int:
    models = Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")
    scheduler = Scheduler(models)
    host, port = ollama_host()
    server = DoubleServer((host, port), scheduler)
    log(f'msg="Listening on {host}:{port} (version {VERSION}, vramcap Ollama double)"')

    def shut_down(signum: int, frame: object) -> None:
        scheduler.unload()  # llama-server got the same signal (one group); wait for its breakdown
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, shut_down)
    signal.signal(signal.SIGTERM, shut_down)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        scheduler.unload()
        server.server_close()
    return 0


def main(argv: list[str]) -> int:
    argv = [arg for arg in argv if not arg.startswith("--tag=")]  # a test's marker on the command line
    if argv[:1] == ["serve"]:
        return serve()
    if argv[:1] in (["--version"], ["-v"]):
        print(f"ollama version is {VERSION}")
        return 0
    print("the vramcap Ollama double only implements `serve` and `--version`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
