"""Read what llama-server reports about memory in its log (``-lv 4``).

Buffer lines (``<backend> model|KV|compute buffer size = X MiB``), the layer
offload line, the memory-breakdown table printed at shutdown and by ``--fit``,
and load failures such as ``cudaMalloc failed: out of memory``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["OOM_MARKERS", "BreakdownRow", "BufferSizes", "FitDevice", "ServerLog", "TensorOverride", "mentions_oom",
           "parse_server_log"]

_BUFFER_RE = re.compile(
    r"(?P<backend>[A-Za-z0-9_]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[0-9.]+) MiB"
)
_OFFLOADED_RE = re.compile(r"offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU")
_BREAKDOWN_RE = re.compile(
    r"\|\s+-\s+(?P<device>[^|]+?)\s+\|\s+(?P<total>\d+)\s+=\s+(?P<free>\d+)\s+\+\s+\(\s*(?P<self>\d+)\s+=\s+"
    r"(?P<model>\d+)\s+\+\s+(?P<context>\d+)\s+\+\s+(?P<compute>\d+)\)\s+\+\s+(?P<unaccounted>\d+)\s+\|"
)
_HOST_BREAKDOWN_RE = re.compile(
    r"\|\s+-\s+Host\s+\|\s+(?P<self>\d+)\s+=\s+(?P<model>\d+)\s+\+\s+(?P<context>\d+)\s+\+\s+(?P<compute>\d+)\s+\|"
)
# common/fit.cpp: the per-device decision ("49 layers (34 overflowing)" once MoE tensors overflow).
_FIT_DEVICE_RE = re.compile(
    r"common_params_fit_impl:\s+-\s+(?P<device>.+?):\s+(?P<layers>\d+) layers(?: \(\s*(?P<over>\d+) overflowing\))?,"
    r"\s+(?P<used>-?\d+) MiB used,\s+(?P<free>-?\d+) MiB free"
)
_FIT_NO_CHANGE = "no changes needed"
_FIT_REDUCE_RE = re.compile(r"need to reduce device memory by (?P<mib>\d+) MiB")
_OVERRIDE_RE = re.compile(
    r"tensor (?P<name>\S+) \((?P<mib>\d+) MiB (?P<type>\S+)\) buffer type overridden to (?P<buft>\S+)"
)
_INFO_RE = re.compile(r"print_info: (?P<key>n_vocab|n_embd_inp|n_embd|n_layer)\s+=\s+(?P<value>\d+)\s*$")
_TYPE_COUNT_RE = re.compile(r"llama_model_loader: - type\s+(?P<type>\w+):\s+(?P<count>\d+) tensors")
_KV_SIZE_RE = re.compile(
    r"llama_kv_cache: size\s*=\s*(?P<mib>[0-9.]+) MiB \(\s*(?P<cells>\d+) cells,\s*(?P<layers>\d+) layers"
)

# Substrings Ollama itself keys on for out-of-memory (llm/status.go) plus llama.cpp's own;
# std::bad_alloc is C++'s out-of-memory exception ("failed to initialize the context:
# std::bad_alloc" when the context's host-side arrays cannot be allocated).
OOM_MARKERS = (
    "out of memory",
    "cudaMalloc failed",
    "failed to allocate",
    "allocation failed",
    "not enough memory",
    "insufficient memory",
    "bad_alloc",
)
_OOM_MARKERS_LOWER = tuple(marker.lower() for marker in OOM_MARKERS)
_LOAD_ERROR_MARKERS = ("exiting due to model loading error", "failed to load model", "error loading model",
                       "failed to create context")


@dataclass
class BufferSizes:
    """MiB per backend for one kind of buffer; the last value logged wins."""

    by_backend: dict[str, float] = field(default_factory=dict)

    def device(self) -> float:
        """Sum over GPU backends (anything that is not host memory)."""
        return sum(v for k, v in self.by_backend.items() if not _is_host(k))

    def host(self) -> float:
        return sum(v for k, v in self.by_backend.items() if _is_host(k))


def mentions_oom(text: str) -> bool:
    """Whether a log line or an error message reports running out of memory (case-insensitive)."""
    lowered = text.lower()
    return any(marker in lowered for marker in _OOM_MARKERS_LOWER)


def _is_host(backend: str) -> bool:
    return backend.startswith("CPU") or backend.endswith("_Host") or backend == "BLAS"


@dataclass(frozen=True)
class BreakdownRow:
    device: str
    total: int
    free: int
    self_mib: int
    model: int
    context: int
    compute: int
    unaccounted: int


@dataclass(frozen=True)
class FitDevice:
    """``--fit``'s decision for one device: layers kept, how many of them overflow (MoE), MiB used/free."""

    device: str
    layers: int
    overflowing: int
    used_mib: int
    free_mib: int
    line: str


@dataclass(frozen=True)
class TensorOverride:
    """A weight llama.cpp placed by an override (``-ot``, ``--n-cpu-moe``, ``--fit``), logged at debug level."""

    name: str
    mib: int
    buffer: str


@dataclass
class ServerLog:
    model: BufferSizes = field(default_factory=BufferSizes)
    kv: BufferSizes = field(default_factory=BufferSizes)
    compute: BufferSizes = field(default_factory=BufferSizes)
    offloaded_layers: tuple[int, int] | None = None
    kv_cells: int | None = None
    breakdowns: list[BreakdownRow] = field(default_factory=list)
    host_breakdowns: list[tuple[int, int, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fit_ran: bool = False
    fit_devices: list[FitDevice] = field(default_factory=list)
    """``--fit``'s final decision, one row per device (empty when it changed nothing or did not run)."""
    fit_unchanged: bool = False
    """``--fit`` found that everything fits as asked."""
    fit_reduce_mib: int | None = None
    """How much device memory ``--fit`` said it had to free."""
    overrides: list[TensorOverride] = field(default_factory=list)
    model_info: dict[str, int] = field(default_factory=dict)
    """``print_info`` values: n_vocab, n_embd, n_embd_inp, n_layer."""
    tensor_types: dict[str, int] = field(default_factory=dict)
    """Tensor count per ggml type in the file (``llama_model_loader: - type q4_K: 289 tensors``)."""
    recognised: int = 0
    """Lines that only llama.cpp writes: zero means this is not a llama.cpp log."""
    lines: list[str] = field(default_factory=list, repr=False)
    """The memory-relevant lines as logged (buffers, offload, fit's decisions), the evidence to quote."""

    @property
    def oom(self) -> bool:
        return any(mentions_oom(line) for line in self.errors)

    @property
    def oom_lines(self) -> list[str]:
        return [line for line in self.errors if mentions_oom(line)]

    @property
    def load_failed(self) -> bool:
        return any(marker in line for line in self.errors for marker in _LOAD_ERROR_MARKERS)

    @property
    def gpu_present(self) -> bool:
        """Whether the server allocated any GPU buffer (a CPU-only build allocates none)."""
        return any(buffers.device() > 0 for buffers in (self.model, self.kv, self.compute))

    @property
    def layers_on_cpu(self) -> int:
        """Layers llama.cpp did not offload ("offloaded N/M" gives M - N)."""
        if not self.offloaded_layers:
            return 0
        n, m = self.offloaded_layers
        return max(0, m - n)

    @property
    def final_breakdown(self) -> BreakdownRow | None:
        """The breakdown printed at shutdown (the last one), not --fit's trial rows; on several cards their sum
        (each card's row: :attr:`final_breakdowns`)."""
        rows = self.final_breakdowns
        if len(rows) < 2:
            return rows[0] if rows else None
        return BreakdownRow(" + ".join(row.device for row in rows),
                            *(sum(getattr(row, name) for row in rows) for name in
                              ("total", "free", "self_mib", "model", "context", "compute", "unaccounted")))

    @property
    def final_breakdowns(self) -> list[BreakdownRow]:
        """The last breakdown's row of each device, in the order printed: the trailing rows up to a device that
        repeats (an earlier breakdown's)."""
        rows: list[BreakdownRow] = []
        for row in reversed(self.breakdowns):
            if any(seen.device == row.device for seen in rows):
                break
            rows.insert(0, row)
        return rows


# Function names llama.cpp prefixes its log lines with (llama-server, and Ollama's runner, which relays them).
_LLAMA_MARKERS = ("llama_model_loader", "load_tensors:", "llama_context:", "llama_kv_cache", "print_info:",
                  "sched_reserve:", "common_", "ggml_cuda_init", "llama_model_load", "main: ", "srv ", "load_backend")


def _strip_prefix(line: str) -> str:
    """The message without llama.cpp's ``0.01.234.567 I`` timestamp and level."""
    return re.sub(r"^\s*\d+\.\d+\.\d+\.\d+ [A-Z] ", "", line.rstrip("\n"))


def parse_server_log(lines: Iterable[str]) -> ServerLog:
    log = ServerLog()
    kinds = {"model": log.model, "KV": log.kv, "compute": log.compute}
    after_fit_row = False  # fit prints one row per device; a new block of rows replaces the last
    for line in lines:
        if "constructing llama_context" in line:
            log.kv.by_backend.clear()  # a new context: its caches replace the last one's
        if match := _BUFFER_RE.search(line):
            target = kinds.get(match["kind"])
            if target is not None:
                backend, mib = match["backend"], float(match["mib"])
                # A sliding-window model has two caches (llama-kv-cache-iswa.cpp), each logging its
                # buffer: they add up. Model and compute buffers are logged once per backend.
                target.by_backend[backend] = target.by_backend.get(backend, 0.0) + mib if target is log.kv else mib
                log.lines.append(_strip_prefix(line))
        elif match := _OFFLOADED_RE.search(line):
            log.offloaded_layers = (int(match["n"]), int(match["m"]))
            log.lines.append(_strip_prefix(line))
        elif match := _FIT_DEVICE_RE.search(line):
            if not after_fit_row:
                log.fit_devices = []
            log.fit_devices.append(FitDevice(match["device"].strip(), int(match["layers"]), int(match["over"] or 0),
                                             int(match["used"]), int(match["free"]), _strip_prefix(line)))
        elif match := _OVERRIDE_RE.search(line):
            log.overrides.append(TensorOverride(match["name"], int(match["mib"]), match["buft"]))
        elif match := _FIT_REDUCE_RE.search(line):
            log.fit_reduce_mib = int(match["mib"])
            log.lines.append(_strip_prefix(line))
        elif "common_params_fit_impl" in line and _FIT_NO_CHANGE in line:
            log.fit_unchanged = True
            log.lines.append(_strip_prefix(line))
        elif match := _BREAKDOWN_RE.search(line):
            log.breakdowns.append(BreakdownRow(
                match["device"].strip(), *(int(match[k]) for k in
                                           ("total", "free", "self", "model", "context", "compute", "unaccounted"))))
        elif match := _HOST_BREAKDOWN_RE.search(line):
            log.host_breakdowns.append((int(match["self"]), int(match["model"]), int(match["context"]),
                                        int(match["compute"])))
        elif match := _KV_SIZE_RE.search(line):
            log.kv_cells = int(match["cells"])
        elif match := _INFO_RE.search(line):
            log.model_info[match["key"]] = int(match["value"])
        elif match := _TYPE_COUNT_RE.search(line):
            log.tensor_types[match["type"]] = int(match["count"])
        after_fit_row = match is not None and match.re is _FIT_DEVICE_RE
        if any(marker in line for marker in _LLAMA_MARKERS):
            log.recognised += 1
        if "common_params_fit_impl" in line:
            log.fit_ran = True
        if " E " in line[:20] or mentions_oom(line) or any(marker in line for marker in _LOAD_ERROR_MARKERS):
            log.errors.append(line.rstrip("\n"))
    return log
