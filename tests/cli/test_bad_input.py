"""Bad input, class by class (docs/reliability.md): every case ends in one `vramcap: error:` line and a
non-zero exit, never a traceback, a hang or a wrong success. Each case runs the CLI as users do."""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_vramcap.model import shape_metadata, write_sparse_gguf
from tests.factories import vramcap
from tests.helpers import misbehaving_server, sigint_reaches_python

pytest_plugins = ["pytester"]


def assert_one_line(result: subprocess.CompletedProcess[str], message: str, code: int = 2) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("vramcap: error:"), result.stderr
    assert message in lines[0], lines[0]


def show_json(tmp_path: Path, edit: Callable[[dict], None], shape: str = "tiny") -> Path:
    """A saved /api/show answer for a 2-layer shape, after ``edit`` damaged it."""
    kv, tensors = shape_metadata(shape, "Q8_0")
    kv = {k: v for k, v in kv.items()}
    body = {"model_info": kv, "tensors": [{"name": t.name, "type": t.ggml_type.name, "shape": list(t.dims)}
                                          for t in tensors]}
    edit(body)
    path = tmp_path / "show.json"
    path.write_text(json.dumps(body, allow_nan=True))
    return path


def plan(path: Path) -> subprocess.CompletedProcess[str]:
    return vramcap("plan", "--model", str(path), "--agents", "2", "--ctx-per-agent", "1024", "--json")


def info(key: str, value: object) -> Callable[[dict], None]:
    return lambda body: body["model_info"].__setitem__(key, value)


def tensor(name: str, **changes: object) -> Callable[[dict], None]:
    def edit(body: dict) -> None:
        for entry in body["tensors"]:
            if entry["name"] == name:
                entry.update(changes)
    return edit


# ---------------------------------------------------------- 1. wrong type, out of range


@pytest.mark.parametrize("edit, message", [
    (info("llama.block_count", "8"), "llama.block_count must be an integer, got '8'"),
    (info("llama.block_count", float("nan")), "llama.block_count must be a finite number"),
    (info("llama.embedding_length", 1e400), "llama.embedding_length must be a finite number"),
    (info("llama.attention.head_count", True), "llama.attention.head_count must be an integer"),
    (info("llama.block_count", -8), "llama.block_count must be >= 1"),
    (info("llama.context_length", [1, 2]), "llama.context_length must be an integer"),
    (info("general.file_type", {"a": 1}), "general.file_type must be an integer"),
    (tensor("output.weight", shape=[1e400, 32000]), "malformed tensor entry"),
    (tensor("output.weight", shape=[0, 32000]), "malformed tensor entry"),
    (lambda body: body.__setitem__("tensors", "many"), "malformed tensor entry"),
], ids=["string", "nan", "1e400", "bool", "negative", "list", "object-file-type", "inf-dim", "zero-dim",
        "tensors-string"])
def test_metadata_of_the_wrong_type(tmp_path: Path, edit: Callable[[dict], None], message: str) -> None:
    assert_one_line(plan(show_json(tmp_path, edit)), message)


@pytest.mark.parametrize("document, message", [("[1, 2]", "JSON object, not list"), ('"text"', "not str"),
                                               ("null", "not NoneType"), ("[" * 50000 + "]" * 50000, "too deeply")])
def test_json_files_that_are_not_objects(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "show.json"
    path.write_text(document)
    assert_one_line(plan(path), message)


@pytest.mark.parametrize("body, message", [
    ('total_mib = "abc"', "total_mib must be an integer, got 'abc'"),
    ("total_mib = inf", "total_mib must be a finite number"),
    ("total_mib = nan", "total_mib must be a finite number"),
    ("total_mib = 1e400", "total_mib must be a finite number"),
    ("total_mib = 99999999999999999", "total_mib must be >= 1 and <= 1,073,741,824"),
    ("total_mib = 16384\nbandwidth_gbps = 0", "bandwidth_gbps must be > 0"),
    ("total_mib = 16384\nbandwidth_gbps = inf", "bandwidth_gbps must be a finite number"),
    ("total_mib = 16384\ndecode_efficiency = 2", "decode_efficiency must be > 0 and <= 1"),
    ("total_mib = 16384\ndescription = 5", "description must be a string"),
    ("total_mib = 16384\nx = " + "[" * 50000 + "]" * 50000, "not valid TOML"),
])
def test_profile_values_of_the_wrong_type(tmp_path: Path, body: str, message: str) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(f"[profiles.card]\n{body}\n")
    assert_one_line(vramcap("plan", "--model", "tiny", "--profiles-file", str(profiles), "--profile", "card"), message)


@pytest.mark.parametrize("size, message", [("9" * 400 + "gb", "are not GPUs"), ("99999999999gb", "are not GPUs"),
                                           ("0.0001mb", "no memory")])
def test_profile_sizes_out_of_range(size: str, message: str) -> None:
    assert_one_line(vramcap("plan", "--model", "tiny", "--profile", size), message)


# ---------------------------------------------------- 2. semantically impossible models


@pytest.mark.parametrize("edit, message", [
    (info("llama.attention.head_count_kv", 16), "8 attention heads do not divide into 16 KV heads"),
    (info("llama.attention.head_count_kv", 3), "8 attention heads do not divide into 3 KV heads"),
    (info("llama.attention.head_count_kv", 0), "head_count_kv must be >= 1"),
    (info("llama.attention.head_count_kv", -4), "head_count_kv must be >= 1"),
    (tensor("blk.0.attn_q.weight", shape=[512, -512]), "malformed tensor entry"),
    (info("llama.block_count", 3), "block_count says 3 layers but the tensors are for 8"),
    (info("llama.block_count", 1_000_000), "block_count must be >= 1 and <= 4,096, got 1,000,000"),
    (lambda body: (body["model_info"].pop("llama.attention.key_length"),
                   body["model_info"].pop("llama.attention.value_length"),
                   body["model_info"].__setitem__("llama.attention.head_count", 7),
                   body["model_info"].__setitem__("llama.attention.head_count_kv", 7)),
     "embedding length 512 does not divide into 7 heads"),
    (info("llama.attention.key_length", 32), "blk.0.attn_k.weight has 256 outputs but the metadata gives 128"),
    (lambda body: body.__setitem__("tensors", [t for t in body["tensors"] if t["name"] != "token_embd.weight"]),
     "no token_embd.weight tensor"),
    (tensor("blk.0.attn_q.weight", shape=[500, 512]), "does not divide into Q8_0 blocks"),
], ids=["kv>heads", "kv-not-dividing", "kv-zero", "kv-negative", "negative-dim", "layers-vs-tensors",
        "million-layers", "embd-not-dividing", "k-shape", "no-token-embd", "row-not-in-blocks"])
def test_impossible_models_are_refused(tmp_path: Path, edit: Callable[[dict], None], message: str) -> None:
    assert_one_line(plan(show_json(tmp_path, edit)), message)


# ------------------------------------------------------------------------- 3. hangs


@pytest.mark.parametrize("offset, count, message", [(8, 2**40, "declares 1,099,511,627,776 tensors"),
                                                    (16, 2**40, "declares 1,099,511,627,776 metadata keys"),
                                                    (8, 2**16, "duplicate tensor name")])
def test_headers_declaring_more_than_the_file_holds(tmp_path: Path, offset: int, count: int, message: str) -> None:
    path = write_sparse_gguf("tiny", "Q8_0", tmp_path / "m.gguf", layers=2)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, offset, count)
    path.write_bytes(data)
    os.truncate(path, 4 * 2**30)  # a sparse 4 GiB of zeros for gguf's reader to walk
    assert_one_line(plan(path), message)


@pytest.mark.parametrize("option", ["--vramcap-startup-timeout=nan", "--vramcap-startup-timeout=inf",
                                    "--vramcap-min-speedup=nan", "--vramcap-rounds=0"])
def test_option_values_that_would_never_end(pytester: pytest.Pytester, option: str) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "Traceback" not in result.stderr.str()


def test_ollama_that_drips_is_given_up_on() -> None:
    with misbehaving_server(drip_s=0.5) as port:
        result = vramcap("plan", "--model", "ollama:qwen", "--ollama-url", f"127.0.0.1:{port}", timeout=60)
    assert_one_line(result, "no complete answer within 10 s")


# ------------------------------------------------------------------- 4. file system


def test_file_system_refusals(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    fifo = tmp_path / "show.json.fifo.json"
    os.mkfifo(fifo)
    cases = [
        (("plan", "--model", "a" * 5000 + ".gguf"), "File name too long"),
        (("plan", "--model", str(tmp_path)), "is not a file"),
        (("plan", "--model", "/proc/self/mem"), "cannot be read"),
        (("plan", "--model", str(fifo)), "is not a regular file"),
        (("synth", "tiny", "--out", "/dev/null"), "is not a regular file: only a regular file is replaced"),
        (("synth", "tiny", "--out", str(a_file / "m.gguf")), "cannot create it there"),
        (("synth", "tiny", "--out", "/proc/m.gguf"), "/proc/m.gguf: No such file or directory"),
    ]
    for args, message in cases:
        assert_one_line(vramcap(*args), message)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_ctrl_c_during_synth_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pytest_vramcap.cli", "synth", "qwen2.5-1.5b", "--quant", "F16",
                             "--out", str(out / "m.gguf")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_reaches_python)
    deadline = time.monotonic() + 60
    while not (out.exists() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the partial file exists
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------- 5. network


@pytest.mark.parametrize("args, message", [
    (("serve", "--model", "tiny", "--port", "70000"), "--port: must be >= 1 and <= 65,535"),
    (("serve", "--model", "tiny", "--host", "bad host"), "--host: must be an IP address or a host name"),
    (("serve", "--model", "tiny", "--host", ""), "--host: must be an IP address or a host name"),
    (("serve", "--model", "tiny", "--host", "[::1"), "--host: must be an IP address or a host name"),
])
def test_network_input(args: tuple[str, ...], message: str) -> None:
    assert_one_line(vramcap(*args), message)


def test_an_invalid_server_url_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """httpx.InvalidURL is not an httpx.HTTPError: it once escaped every handler."""
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "--vramcap-server-url=http://[::1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vramcap-server-url: 'http://[[]::1' is not a valid URL*"])
    assert "Traceback" not in result.stderr.str()


def test_credentials_are_never_shown() -> None:
    result = vramcap("plan", "--model", "ollama:x", "--ollama-url", "http://user:secret@127.0.0.1:9")
    assert_one_line(result, "cannot reach Ollama: http://***@127.0.0.1:9")
    assert "secret" not in result.stderr + result.stdout


# --------------------------------------------------------------------- 6. recursion


def test_a_scenario_nested_50000_deep_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.mkdir("scenarios")
    pytester.path.joinpath("scenarios/deep.yaml").write_text("steps: " + "[" * 50000 + "]" * 50000 + "\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb", "--collect-only", "scenarios")
    result.stdout.fnmatch_lines(["*deep.yaml: not a scenario: nested too deeply*"])
    assert "RecursionError" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(("args", "message", "code"), [
    (["load", "--slo", "ttft_p95_s=0"], "argument --slo: must be positive, got 0", 2),
    (["load", "--slo", "speed=3"], "use NAME=VALUE with NAME one of", 2),
    (["load", "--server-url", "http://127.0.0.1:{port}", "--model", "tiny"], "--server-url and --model both given",
     2),
    (["load", "--server-url", "http://127.0.0.1:{port}"], "cannot reach --server-url http://127.0.0.1:", 3),
    (["capacity", "--ttft-p95", "-1"], "argument --ttft-p95: must be positive", 2),
    (["capacity", "--start-users", "5", "--max-users", "2"], "--start-users 5 is above --max-users 2", 2),
    (["capacity", "--server-url", "http://127.0.0.1:{port}"], "cannot reach --server-url http://127.0.0.1:", 3),
    (["capacity", "--scenario", "missing.yaml", "--server-url", "http://127.0.0.1:{port}"],
     "scenario file 'missing.yaml' does not exist", 2),
])
def test_load_and_capacity_refuse_bad_input_before_any_load(args: list[str], message: str, code: int) -> None:
    from pytest_vramcap.engines import free_port

    port = free_port()  # nothing listens there
    result = vramcap(*(arg.format(port=port) for arg in args), cwd=Path(__file__).parents[2], timeout=120)
    assert_one_line(result, message, code)


# --------------------------------------------------------------------- 7. a user's graph that cannot be had

GRAPH_FILES = {
    "raises.py": "import os\n\nMODEL = os.environ['VRAMCAP_TEST_NO_SUCH_VARIABLE']\n",
    "app.py": "value = 3\n\ndef two(a, b):\n    return None\n\ndef make(*, key):\n    return None\n",
    "langgraph.json": '{"graphs": {"agent": "./app.py:two"}}',
    "broken.json": '{"graphs": ',
}


@pytest.mark.parametrize(("graph", "message", "user_frame"), [
    ("raises.py:graph", "raises.py cannot be imported: KeyError: 'VRAMCAP_TEST_NO_SUCH_VARIABLE'",
     'raises.py", line 3, in <module>'),
    ("app.py:value", "app.py:value: is a int, neither a graph (no ainvoke) nor a callable that makes one", None),
    ("app.py:two", "app.py:two: two(a, b) needs a, b: vramcap calls it with one argument at most", None),
    ("app.py:make", "app.py:make: make(key) needs key", None),
    ("langgraph.json:other", "langgraph.json has no graph 'other' (it names: agent)", None),
    ("broken.json:agent", "broken.json is not JSON: Expecting value (line 1, column 12)", None),
])
def test_a_graph_that_cannot_be_had_is_one_line_and_exit_2(tmp_path: Path, graph: str, message: str,
                                                           user_frame: str | None) -> None:
    from pytest_vramcap.engines import free_port

    for name, text in GRAPH_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "s.yaml").write_text(f"graph: {graph}\n")
    # nothing listens at --server-url: the graph is refused before anything is reached
    result = vramcap("load", "--scenario", str(tmp_path / "s.yaml"), "--server-url",
                     f"http://127.0.0.1:{free_port()}", cwd=tmp_path, timeout=120)
    if user_frame is None:
        assert_one_line(result, message)
        return
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and user_frame in result.stderr  # the user's, once
    assert lines[-1].startswith("vramcap: error: ") and message in lines[-1]
    assert "pytest_vramcap" not in result.stderr and result.stderr.count("Traceback") == 1
