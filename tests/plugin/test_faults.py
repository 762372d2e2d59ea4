"""The fault matrix: each fault ends in one clear verdict or error, the report is written where a run
started, no llama-server of the test's is left behind, and the exit code is the documented one
(docs/reliability.md). Real llama-server processes throughout; the misbehaving HTTP servers are
small sockets in this process, standing in for servers that hang or drip.

No outcome here rests on a clock: timeouts are the faults' own, and every wait has a generous bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_vramcap.engines.base import free_port
from pytest_vramcap.model.synth import write_gguf
from tests.helpers import (
    LLAMA_SERVER,
    misbehaving_server,
    needs_llama_server,
    processes_with,
    sigint_reaches_python,
)

pytest_plugins = ["pytester"]

pytestmark = needs_llama_server

PAIR = """
name: pair
steps:
  - name: work
    agents:
      - {{role: a, prompt: "first angle", max_tokens: {tokens}}}
      - {{role: b, prompt: "second angle", max_tokens: {tokens}}}
"""


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf("tiny", "F16", tmp_path_factory.mktemp("model") / "tiny2.gguf", layers=2)


@pytest.fixture
def model(tmp_path: Path, shared_model: Path) -> Iterator[Path]:
    """The shared model under a path of this test's own: llama-server's argv names it, so the
    processes this test started can be told from a neighbour's.

    Backstop: a test that failed half-way (a timeout on a loaded machine) may have SIGKILLed the
    pytest child before it could stop its server; what still names this path is killed here,
    after the test's own assertions have looked.
    """
    link = tmp_path / "model-under-test.gguf"
    link.symlink_to(shared_model)
    yield link
    for pid in processes_with(str(link)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def project(pytester: pytest.Pytester, tokens: int = 16) -> Path:
    pytester.mkdir("scenarios")
    pytester.path.joinpath("scenarios/pair.yaml").write_text(PAIR.format(tokens=tokens))
    return pytester.path


def args(pytester: pytest.Pytester, model: Path, *extra: str) -> list[str]:
    return ["--vram-profile=16gb", f"--vramcap-model={model}", "--vramcap-ctx=1024", "--vramcap-rounds=1",
            f"--vramcap-report-dir={pytester.path / 'reports'}", "-p", "no:cacheprovider", *extra, "scenarios"]


def the_report(pytester: pytest.Pytester) -> dict:
    reports = sorted((pytester.path / "reports").glob("vramcap-*.json"))
    assert len(reports) == 1, reports
    return json.loads(reports[0].read_text())


# Hang guards, not verdicts: on a 2-core machine under -n 2 and other load these runs take minutes.
HANG_GUARD_S = 600.0


def wait_for(predicate, what: str, timeout_s: float = HANG_GUARD_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_oom_at_load(pytester: pytest.Pytester, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real llama-server whose KV cache cannot be allocated: 32 GiB asked, 4 GB of address space."""
    limited = tmp_path / "llama-server-4gb"
    limited.write_text(f'#!/bin/sh\nulimit -v 4000000\nexec "{LLAMA_SERVER}" "$@"\n')
    limited.chmod(0o755)
    project(pytester)
    monkeypatch.setenv("VRAMCAP_LLAMA_SERVER", str(limited))  # the subprocess inherits it
    result = pytester.runpytest_subprocess(*args(pytester, model, "--vram-profile=1024gb", "--vramcap-agents=2",
                                                 "--vramcap-ctx=8388608"), timeout=300)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*[[]FAIL[]] oom: the server could not allocate its memory or died*",
                                 "*log: * failed to allocate buffer for kv cache*"])
    data = the_report(pytester)
    assert data["passed"] is False and data["engine"]["exit_code"] == 1
    assert processes_with(str(model)) == []


@pytest.mark.parametrize("drip_s", [None, 0.5], ids=["never-answers", "drips"])
def test_attached_server_that_hangs_or_drips(pytester: pytest.Pytester, model: Path, drip_s: float | None) -> None:
    project(pytester)
    with misbehaving_server(drip_s) as port:
        url = f"http://user:secret@127.0.0.1:{port}"
        result = pytester.runpytest_subprocess(*args(pytester, model, f"--vramcap-server-url={url}",
                                                     "--vramcap-startup-timeout=3"), timeout=120)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*[[]FAIL[]] engine: no healthy server at http://***@127.0.0.1:{port} "
                                 f"(GET /health) within 3 s*"])
    output = result.stdout.str() + result.stderr.str()
    report_text = next((pytester.path / "reports").glob("vramcap-*.json")).read_text()
    assert "secret" not in output and "secret" not in report_text  # credentials are sent, never shown



def test_an_attached_url_where_nothing_listens_fails_in_seconds(pytester: pytest.Pytester, model: Path) -> None:
    """A refused connection is no server still loading: the run does not wait out the 300 s startup timeout."""
    project(pytester)
    port = free_port()  # bound and released: nothing listens there
    result = pytester.runpytest_subprocess(*args(pytester, model, f"--vramcap-server-url=http://127.0.0.1:{port}",
                                                 "--vramcap-startup-timeout=300"), timeout=120)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*[[]FAIL[]] engine: nothing listens at http://127.0.0.1:{port} (connection "
                                 f"refused or the host does not resolve, for 5 s)*"])


def tasks_started(root: Path) -> int:
    """Requests the run's llama-server has begun: its log has one "processing task" line per request."""
    logs = list((root / "reports" / "logs").glob("llama-server-*.log"))
    return logs[0].read_text(errors="replace").count("processing task") if logs else 0


@contextmanager
def pytest_process(root: Path, *argv: str) -> Iterator[subprocess.Popen[str]]:
    """pytest in a subprocess of ours, killed if the test ends before it does."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *argv], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=sigint_reaches_python)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_middle_of_the_parallel_pass(pytester: pytest.Pytester, model: Path, sig: int) -> None:
    # SIGTERM is how CI cancels a job: it takes the Ctrl-C path too (plugin/signals.py).
    # 1000 tokens a request: the parallel pass outlasts the 0.1 s poll unloaded, and the passes
    # before it end within the hang guard when the machine is loaded (the pass only gets longer).
    root = project(pytester, tokens=1000)
    with pytest_process(root, *args(pytester, model, "--vramcap-ctx=16384")) as proc:
        # the warm-up, two sequential requests, then the parallel pair: the 4th request is parallel
        wait_for(lambda: tasks_started(root) >= 4, "the parallel pass")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert the_report(pytester)["engine"]["exit_code"] is not None  # stopped, and the report still written
    assert processes_with(str(model)) == []


STOPPED_BEYOND_TIMEOUT_S = 7.0
"""How long past the request timeout the server stays stopped (the issue's fault is 30 s: the same path, shorter)."""


def test_an_engine_stopped_mid_request_ends_its_requests_as_timeouts(pytester: pytest.Pytester, model: Path) -> None:
    """SIGSTOP the server once the sequential pass has begun, longer than --vramcap-request-timeout: the requests it
    held fail as timeouts, the run still ends with its verdicts (issue 28), and after SIGCONT the server is stopped as
    usual."""
    root = project(pytester, tokens=1000)
    with pytest_process(root, *args(pytester, model, "--vramcap-ctx=8192", "--vramcap-request-timeout=3")) as proc:
        wait_for(lambda: tasks_started(root) >= 2, "the sequential pass")  # the warm-up, then the first request
        server = [pid for pid in processes_with(str(model))
                  if b"llama-server" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]]
        assert len(server) == 1, server
        os.kill(server[0], signal.SIGSTOP)
        try:
            time.sleep(3 + STOPPED_BEYOND_TIMEOUT_S)  # held stopped past the request timeout
        finally:
            os.kill(server[0], signal.SIGCONT)
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    scenario = the_report(pytester)["scenarios"][0]
    kinds = {r["error_kind"] for mode in ("sequential", "parallel") for r in scenario[mode]["requests"]}
    assert "timeout" in kinds, kinds
    assert "the engine sent nothing for 3 s" in out or "timed out" in out, out[-3000:]
    assert processes_with(str(model)) == []



def test_xdist_workers_killed_mid_run(pytester: pytest.Pytester, model: Path) -> None:
    # Two scenarios, one per worker, with requests long enough that both workers are mid-request when they
    # are killed; nothing is left to run after the kill. (With one worker killed, the other's 1000-token
    # passes ran at 5 tokens/s on a 2-core machine under `yes` and outlasted the hang guard.)
    root = project(pytester, tokens=1000)
    root.joinpath("scenarios/two.yaml").write_text(PAIR.format(tokens=1000).replace("name: pair", "name: two"))
    with pytest_process(root, "-n", "2", *args(pytester, model, "--vramcap-ctx=8192")) as proc:
        # the two workers' warm-ups, then the first request of each
        wait_for(lambda: tasks_started(root) >= 4, "requests from the workers")
        workers = [pid for pid in processes_with("execnet") if _parent(pid) == proc.pid] or \
            [pid for pid in processes_with("sys.stdin.readline") if _parent(pid) == proc.pid]
        assert len(workers) == 2, f"xdist workers found: {workers}"
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert all(f"crashed while running 'scenarios/{name}.yaml::{name}'" in out for name in ("pair", "two")), out
    assert the_report(pytester)["engine"]["exit_code"] is not None  # the controller stopped it
    assert processes_with(str(model)) == []


def _parent(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _small_disk() -> None:
    """In the child: files may grow to 1 MiB; past that, writes fail with EFBIG instead of a signal."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_disk_full_while_synthesizing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pytest_vramcap.cli", "synth", "tiny", "--quant", "F16",
                             "--out", str(out / "tiny.gguf")], capture_output=True, text=True, timeout=120,
                            preexec_fn=_small_disk)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("vramcap: error:") and "File too large" in lines[-1]
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == []  # neither the model nor a partial file


def test_disk_full_while_the_plugin_synthesizes(pytester: pytest.Pytester) -> None:
    root = project(pytester)
    models = pytester.path / "models"
    command = [sys.executable, "-m", "pytest", "--vram-profile=16gb", "--vramcap-model=tiny:F16",
               f"--vramcap-models-dir={models}", "--vramcap-rounds=1", "-p", "no:cacheprovider", "scenarios"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, preexec_fn=_small_disk)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "cannot write the model to" in result.stdout and "File too large" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert list(models.iterdir()) == []
    assert processes_with(str(models)) == []
