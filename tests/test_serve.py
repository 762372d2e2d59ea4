"""`vramcap serve`: plan, synthesize, start, answer, and stop cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import needs_llama_server

pytestmark = needs_llama_server


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [19] start time."""
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def llama_server_children(parent: int) -> set[tuple[int, str]]:
    """(pid, start time) of llama-servers whose parent is ``parent``: what this test started, not a neighbour's."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
                if int(fields[1]) == parent and b"llama-server" in (entry / "cmdline").read_bytes().split(b"\0")[0]:
                    found.add((int(entry.name), fields[19]))
            except (OSError, IndexError, ValueError):
                continue
    return found


def still_running(pid: int, started: str) -> bool:
    """The same process (not a reused pid) exists and is not a zombie."""
    try:
        fields = _stat(pid)
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


def test_serve_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_vramcap.cli", "serve", "--model", "tiny:Q8_0", "--profile", "16gb",
         "--agents", "2", "--ctx-per-agent", "512", "--models-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = None
        deadline = time.monotonic() + 180
        lines = []
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"serving .* at (http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url, "".join(lines) + proc.stderr.read()
        assert "FITS" in "".join(lines) and "OLLAMA_NUM_PARALLEL=2" in "".join(lines)
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert (tmp_path / "tiny-Q8_0.gguf").is_file()
        servers = llama_server_children(proc.pid)
        assert len(servers) == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "server stopped" in out
    assert not any(still_running(pid, started) for pid, started in servers)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_serve_without_an_engine_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "VRAMCAP_LLAMA_SERVER": str(tmp_path / "missing-llama-server")}
    result = subprocess.run([sys.executable, "-m", "pytest_vramcap.cli", "serve", "--model", "tiny:Q8_0",
                             "--agents", "1", "--ctx-per-agent", "256", "--models-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("vramcap: error:")
    assert "Traceback" not in result.stderr
