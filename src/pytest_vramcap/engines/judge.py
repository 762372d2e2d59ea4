"""One judgement of a llama.cpp log: did the weights and the KV cache stay where they belong?

The pytest verdicts and ``vramcap diagnose`` both call :func:`judge_spill`, so a
log reads the same way everywhere. A spill is any of:

* layers left on the CPU ("offloaded N/M layers to GPU" with N < M, beyond what the plan asked);
* KV cache in host memory beyond the plan's;
* ``--fit`` keeping fewer layers than the model has, or marking layers "overflowing"
  (an MoE model keeps "offloaded 49/49" while its expert tensors move to the CPU);
* model weights in host memory beyond what llama.cpp always keeps there.

How much moved: with a plan (or a model file) it is the planned GPU weights minus
the GPU model buffers; without one, the host model buffers beyond the token
embeddings, which over-counts under mmap (the CPU_Mapped buffer spans the file range
from the first to the last host tensor, GPU tensors in between included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..defaults import MIB
from ..errors import ConfigError
from ..model.ggmltypes import row_bytes, type_by_name
from ..planner.memory import MemoryBreakdown
from .logparse import ServerLog

__all__ = ["Placement", "SpillJudgement", "embedding_bound_mib", "fit_overflow_layers", "judge_spill",
           "layer_ranges"]

_TOLERANCE_MIB = 1.0
_LAYER_RE = re.compile(r"blk\.(\d+)\.")  # buffer sizes are logged with two decimals; a real spill moves whole tensors


@dataclass(frozen=True)
class Placement:
    """Where weights and KV belong: what is not a spill (the plan's, or full offload of a model)."""

    gpu_model_mib: float
    host_model_mib: float
    """Token embeddings plus whatever the plan itself keeps on the CPU (-ngl, --n-cpu-moe)."""
    host_kv_mib: float
    gpu_layers: int
    total_layers: int

    @classmethod
    def planned(cls, memory: MemoryBreakdown) -> Placement:
        return cls(memory.gpu.model / MIB, memory.cpu.model / MIB, memory.cpu.context / MIB, memory.gpu_layers,
                   memory.total_layers)


@dataclass(frozen=True)
class SpillJudgement:
    cpu_offload: bool
    evidence: tuple[str, ...]
    moved_mib: float | None
    """Weights that left the GPU, in MiB (None: the log alone cannot say)."""
    moved_is_bound: bool
    """``moved_mib`` is an upper bound read from host buffers (no plan or model to compare with)."""
    layers: tuple[int, ...]
    """Repeating layers with some weights on the CPU, as far as the log shows."""



def layer_ranges(values: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2, 5"``."""
    parts: list[str] = []
    for value in sorted(set(values)):
        if parts and value == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{value}"
        else:
            parts.append(str(value))
    return ", ".join(parts)


def embedding_bound_mib(log: ServerLog) -> float | None:
    """Upper bound of the token embeddings from the log alone: n_vocab x n_embd at the widest non-F32 type.

    llama.cpp keeps ``token_embd`` in host memory on every run. Files store it at the mix's
    type or wider, F32 only in all-F32 files.
    """
    n_vocab, n_embd = log.model_info.get("n_vocab"), log.model_info.get("n_embd_inp", log.model_info.get("n_embd"))
    if not n_vocab or not n_embd or not log.tensor_types:
        return None
    widest = 0
    for name in log.tensor_types:
        if name == "f32" and len(log.tensor_types) > 1:
            continue
        try:
            widest = max(widest, row_bytes(type_by_name(name), n_embd) * n_vocab)
        except ConfigError:  # a type gguf-py does not know, or rows that do not fill its blocks
            continue
    return widest / MIB if widest else None


def fit_overflow_layers(log: ServerLog) -> tuple[int, ...]:
    """Layers whose tensors ``--fit`` sent to the CPU, as common/fit.cpp lays them out.

    ``set_ngl_tensor_split_tbo``: the first ``M - sum(layers)`` layers stay on the CPU; then,
    per device, ``layers - overflowing`` full layers and ``overflowing`` layers whose FFN
    (MoE: expert) tensors overflow to the next device or the CPU. Index M - 1 is the output layer.
    """
    if not log.fit_devices or not log.offloaded_layers:
        return ()
    total = log.offloaded_layers[1]
    n_repeating = total - 1
    first = total - sum(device.layers for device in log.fit_devices)
    layers = list(range(0, max(0, first)))
    for device in log.fit_devices:
        first += device.layers - device.overflowing
        layers += range(first, first + device.overflowing)
        first += device.overflowing
    return tuple(layer for layer in layers if layer < n_repeating)


def judge_spill(log: ServerLog, expected: Placement | None = None) -> SpillJudgement:
    """Whether weights or KV left the GPU, with the log lines that show it (never, on a CPU-only run)."""
    if not log.gpu_present:
        return SpillJudgement(False, (), 0.0, False, ())
    evidence: list[str] = []
    layers: list[int] = []
    moved: float | None = None
    bound_only = False
    n, m = log.offloaded_layers or (0, 0)
    planned_cpu_layers = expected.total_layers - expected.gpu_layers if expected else 0
    if log.layers_on_cpu > planned_cpu_layers:
        evidence.append(f"offloaded {n}/{m} layers to GPU ({log.layers_on_cpu} left on the CPU"
                        + (f", the plan left {planned_cpu_layers})" if planned_cpu_layers else ")"))
        layers += range(planned_cpu_layers, m - n)
    host_kv = log.kv.host()
    if host_kv > (expected.host_kv_mib if expected else 0.0) + _TOLERANCE_MIB:
        evidence.append(f"CPU KV buffer {host_kv:.2f} MiB" + (f" (the plan: {expected.host_kv_mib:.2f} MiB)"
                                                                if expected and expected.host_kv_mib else ""))
    fit_layers = fit_overflow_layers(log)
    fit_kept_fewer = bool(m) and sum(device.layers for device in log.fit_devices) < m
    evidence += [f"--fit: {device.line.split(':', 1)[-1].strip()}" for device in log.fit_devices
                 if device.overflowing or fit_kept_fewer]
    layers += fit_layers
    layers += [int(match[1]) for o in log.overrides
               if o.buffer.startswith("CPU") and (match := _LAYER_RE.match(o.name))]
    host_model, gpu_model = log.model.host(), log.model.device()
    if expected is not None and gpu_model > 0:
        short = expected.gpu_model_mib - gpu_model
        # What left the GPU must show up on the host (a tensor llama.cpp skips shows up on neither).
        moved = short if short > _TOLERANCE_MIB and host_model - expected.host_model_mib >= short - _TOLERANCE_MIB \
            else 0.0
        if moved:
            evidence.append(f"{moved:.2f} MiB of weights that belong on the GPU are in host memory "
                            f"(GPU model buffers {gpu_model:.2f} MiB, expected {expected.gpu_model_mib:.2f} MiB)")
    elif gpu_model > 0:
        bound = embedding_bound_mib(log)
        overrides = sum(o.mib for o in log.overrides if o.buffer.startswith("CPU"))
        if overrides:
            moved = float(overrides)
        if bound is not None and host_model > bound + _TOLERANCE_MIB:
            evidence.append(f"host model buffers {host_model:.2f} MiB, more than the token embeddings llama.cpp "
                            f"keeps there (at most {bound:.2f} MiB)")
            if moved is None and not fit_layers and not log.layers_on_cpu:
                moved, bound_only = host_model - bound, True
    spilled = bool(evidence)  # every line above records something that left the GPU
    if spilled and moved and layers:
        evidence.append(f"moved: {moved:.2f} MiB of weights, layers {layer_ranges(tuple(layers))}")
    elif spilled and layers:
        evidence.append(f"layers with weights on the CPU: {layer_ranges(tuple(layers))}")
    return SpillJudgement(spilled, tuple(evidence), moved if spilled else 0.0, bound_only,
                          tuple(sorted(set(layers))))
