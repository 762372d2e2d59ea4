"""One llama-server started as Ollama >= 0.30 starts it, and what Ollama reads from its log.

Copied from llm/llama_server.go (launch flags, MemorySize, memoryParsingWriter,
WaitUntilRunning) and llm/status.go (error and out-of-memory lines).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx

# llm/llama_server.go: bufferSizeRegex, offloadedLayersRegex, fitOverflowingLayersRegex
BUFFER_RE = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*):\s+(\S+)\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([\d.]+)\s*MiB")
OFFLOADED_RE = re.compile(r"offloaded\s+(\d+)/(\d+)\s+layers to GPU")
OVERFLOW_RE = re.compile(r"common_params_fit_impl:\s+-\s+.+:\s+\d+\s+layers\s+\(\s*(\d+)\s+overflowing\)")

# llm/status.go: errorPrefixes and outOfMemorySubstrings
ERROR_PREFIXES = ("panic:", "fatal error:", "error:", "Error:", "CUDA error", "ROCm error", "cudaMalloc failed",
                  '"ERR"', "error loading model", "GGML_ASSERT", "llama_init_from_model:")
OOM_SUBSTRINGS = ("out of memory", "out of device memory", "cudamalloc failed", "hipmalloc failed",
                  "failed to allocate", "allocation failed", "not enough memory", "insufficient memory",
                  "vk_error_out_of_device_memory", "erroroutofmemory")


def is_out_of_memory(message: str) -> bool:
    lowered = message.lower()
    return any(needle in lowered for needle in OOM_SUBSTRINGS)


def status_error_line(line: str) -> str:
    """llm/status.go statusErrorLine: the error part of a log line, or ""."""
    found = [(line.index(prefix), prefix) for prefix in ERROR_PREFIXES if prefix in line]
    if found:
        start, prefix = min(found)
        return prefix + line[start + len(prefix):].rstrip()
    return line if is_out_of_memory(line) else ""


def is_gpu_buffer(name: str) -> bool:
    """llm/llama_server.go isGPUBuffer: CPU, BLAS, CPU_* and *_Host are host memory."""
    return not (name in ("CPU", "BLAS") or name.startswith("CPU_") or name.endswith("_Host"))


@dataclass
class LaunchOptions:
    """What Ollama's scheduler decided for one load (server/sched.go load, api.Options)."""

    num_ctx: int
    num_parallel: int
    num_batch: int
    num_gpu: int = -1
    kv_cache_type: str = ""
    flash_attention: str = "auto"
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int = 0
    embedding: bool = False


@dataclass
class Runner:
    """A llama-server subprocess; its output goes to the double's stderr, as Ollama's log carries it."""

    binary: str
    model_path: str
    options: LaunchOptions
    port: int
    process: subprocess.Popen[bytes] | None = None
    buffers: dict[tuple[str, str, str], float] = field(default_factory=dict)
    gpu_layers: int = 0
    total_layers: int = 0
    overflow: int = 0
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def argv(self) -> list[str]:
        """llm/llama_server.go startLlamaServer: the flags in Ollama's order."""
        opts = self.options
        args = [self.binary, "--model", self.model_path, "--port", str(self.port), "--host", "127.0.0.1",
                "--no-webui", "--offline", "-c", str(opts.num_ctx * opts.num_parallel), "-np", str(opts.num_parallel),
                "--log-verbosity", "4", "--no-log-prefix", "--no-log-timestamps"]
        if opts.use_mmap is False:  # appendLoadModeArgs: use_mmap false loads without mmap
            args += ["--load-mode", "none"]
        if opts.kv_cache_type:
            args += ["--cache-type-k", opts.kv_cache_type, "--cache-type-v", opts.kv_cache_type]
        args += ["--flash-attn", opts.flash_attention]
        if opts.embedding:  # appendBatchArgs: an embedding model's batch is already capped by its caller
            args.append("--embedding")
        if opts.num_batch > 0:
            args += ["-b", str(opts.num_batch), "-ub", str(opts.num_batch)]
        if opts.num_gpu >= 0:
            args += ["-ngl", str(opts.num_gpu)]
        if opts.num_thread > 0:  # only an explicit thread count; llama-server picks one otherwise
            args += ["-t", str(opts.num_thread)]
        if opts.main_gpu is not None:  # appendMainGPUArgs
            args += ["--split-mode", "none", "--main-gpu", str(opts.main_gpu)]
        return args

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = self.argv()
        log(f'msg="starting llama-server" cmd="{" ".join(argv)}"')
        # Same process group as the double: stopping `ollama serve`'s group stops its runner too.
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=os.environ.copy())
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            self._absorb(line)

    def _absorb(self, line: str) -> None:
        with self._lock:
            if error := status_error_line(line):
                self.last_error = error
            for match in OFFLOADED_RE.finditer(line):
                self.gpu_layers, self.total_layers = int(match[1]), int(match[2])
            for match in OVERFLOW_RE.finditer(line):
                self.overflow += int(match[1])
            for match in BUFFER_RE.finditer(line):
                self.buffers[(match[1], match[2], match[3])] = float(match[4])

    def wait_until_running(self, timeout_s: float) -> None:
        """llm/llama_server.go WaitUntilRunning: ready, or Ollama's own error text."""
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while True:
            code = self.process.poll()
            if code is not None:
                message = self.last_error
                if is_out_of_memory(message):
                    raise LoadError(f"llama-server reported out-of-memory during startup: {message}")
                suffix = f": {message}" if message else ""
                raise LoadError(f"llama-server process has terminated: exit status {code}{suffix}")
            if time.monotonic() > deadline:
                raise LoadError(f"timed out waiting for llama-server to start - {self.last_error}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    log(f'msg="llama-server started in {timeout_s - (deadline - time.monotonic()):.2f} seconds"')
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def memory_size(self) -> tuple[int, int]:
        """llm/llama_server.go MemorySize: (size, size_vram) in bytes, from the buffer lines."""
        with self._lock:
            buffers = [(backend, kind, int(mib * 1024 * 1024)) for (_, backend, kind), mib in self.buffers.items()]
            total = sum(size for _, _, size in buffers)
            vram = sum(size for backend, _, size in buffers if is_gpu_buffer(backend))
            file_backed = sum(size for backend, kind, size in buffers
                              if kind == "model" and (is_gpu_buffer(backend) or backend.endswith("_Mapped")))
            cpu_mapped = sum(size for backend, kind, size in buffers
                             if kind == "model" and not is_gpu_buffer(backend) and backend.endswith("_Mapped"))
            layers, total_layers, overflow = self.gpu_layers, self.total_layers, self.overflow
        if total == 0:
            size = os.path.getsize(self.model_path)
            return size, size
        file_size = os.path.getsize(self.model_path)
        if cpu_mapped and file_backed > file_size:
            total -= min(cpu_mapped, file_backed - file_size)
        if total_layers and layers >= total_layers and overflow == 0:
            total = vram
        return total, vram

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LoadError(Exception):
    """A load that failed; the message is the one Ollama returns with HTTP 500."""


def log(message: str, level: str = "INFO") -> None:
    """A server log line in slog's text form, as `ollama serve` writes them."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"time={stamp} level={level} source=double {message}\n")
    sys.stderr.flush()
